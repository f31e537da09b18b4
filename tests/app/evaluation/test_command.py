"""`mega-asr-server evaluate` through app.cli.main: report.json + PNG + summary, and its failures."""

from __future__ import annotations

import json

from app.cli import main
from tests.app.evaluation.conftest import labelled_clips, write_manifest


def test_evaluate_a_running_service(fake_service, labelled_manifest, tmp_path, capsys):
    base_url, _ = fake_service()
    out = tmp_path / "out"
    assert main(["evaluate", str(labelled_manifest), "--out", str(out), "--url", base_url,
                 "--batch-size", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"] == base_url and len(report["items"]) == 4
    assert report["recommendation"]["routing"] == "router" and report["recommendation"]["errors"] == 0
    assert (out / "error_vs_threshold.png").read_bytes()[:4] == b"\x89PNG"
    captured = capsys.readouterr()
    assert "Recommendation: Use MEGA_ASR_THRESHOLD=" in captured.out
    assert "evaluating" in captured.err  # the progress bar goes to stderr, not into the summary


def test_evaluate_in_process_with_the_tests_profile(tmp_path, monkeypatch, capsys):
    # Tiny random-weight models: the texts are nonsense, but the whole path runs on a real pipeline.
    monkeypatch.setenv("MEGA_ASR_PROFILE", "tests")
    monkeypatch.setenv("MEGA_ASR_ROUTING", "always_robust")  # evaluation forces routing=router
    monkeypatch.setenv("MEGA_ASR_THRESHOLD", "0.3")
    monkeypatch.setenv("MEGA_ASR_SPEECH_GATE", "false")  # the clips are tones: no speech for the gate
    manifest = write_manifest(tmp_path / "clips", labelled_clips()[:2])
    out = tmp_path / "out"
    assert main(["evaluate", str(manifest), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"].startswith("in-process, profile tests")
    assert report["totals"]["configured_threshold"]["threshold"] == 0.3
    assert all(0.0 <= row["router_score"] <= 1.0 for row in report["items"])
    assert all(row["base"] is not None and row["robust"] is not None for row in report["items"])
    assert (out / "error_vs_threshold.png").exists()
    assert "routed @ 0.3 " in capsys.readouterr().out


def test_a_bad_manifest_exits_2_before_loading_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEGA_ASR_PROFILE", "production")
    monkeypatch.setenv("MEGA_ASR_MODEL_DIR", str(tmp_path / "no-models"))
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\treference\nmissing.wav\thello\n")
    assert main(["evaluate", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "m.tsv:2: audio file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_batch_size_exits_2(labelled_manifest, tmp_path, capsys):
    assert main(["evaluate", str(labelled_manifest), "--out", str(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_missing_models_are_reported_without_a_traceback(labelled_manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEGA_ASR_PROFILE", "production")
    monkeypatch.setenv("MEGA_ASR_MODEL_DIR", str(tmp_path / "no-models"))
    assert main(["evaluate", str(labelled_manifest), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: cannot load the production profile: ") and "not a Mega-ASR checkpoint" in err
