"""From transcripts to report.json, the plot and the summary, on the labelled fake manifest."""

from __future__ import annotations

import json

import pytest

from app.evaluation.command import evaluate, score_item
from app.evaluation.manifest import read_manifest
from app.evaluation.report import _item_row, report_dict, summary, write_plot, write_report
from app.evaluation.runners import InProcessRunner, ItemTranscripts, PathTranscript
from tests.app.evaluation.conftest import fake_pipeline, tone_config


@pytest.fixture
def result(labelled_manifest):
    runner = InProcessRunner(fake_pipeline(), tone_config())
    return evaluate(labelled_manifest, read_manifest(labelled_manifest), runner, source="fake",
                    configured_threshold=0.5)


def test_the_known_threshold_is_recommended(result):
    loud_score = max(item.transcripts.router_score for item in result.items)
    b = result.baselines
    assert (b.base.errors, b.robust.errors, b.oracle.errors, b.base.units) == (2, 2, 0, 8)
    rec = result.recommendation
    assert rec.routing == "router" and rec.best.errors == 0
    assert rec.best.threshold == loud_score  # highest threshold that still sends the loud clips robust
    assert loud_score == pytest.approx(0.8, abs=1e-3) and rec.best.setting == 0.8  # same split, 2 decimals
    assert rec.gain_errors == 2


def test_report_json_rows_sweep_and_recommendation(result, tmp_path):
    path = tmp_path / "report.json"
    write_report(result, path)
    report = json.loads(path.read_text())
    assert report["recommendation"]["routing"] == "router" and report["recommendation"]["errors"] == 0
    assert report["recommendation"]["setting"] == 0.8
    assert report["recommendation"]["same_split_for"]["above"] == pytest.approx(0.2, abs=1e-3)
    assert report["totals"]["items"] == 4 and report["totals"]["audio_seconds"] == 6.0
    assert report["totals"]["base_only"]["rate"] == 0.25 and report["totals"]["oracle"]["rate"] == 0.0
    assert report["totals"]["configured_threshold"] == {"threshold": 0.5, "errors": 0, "units": 8,
                                                        "robust_items": 2, "robust_seconds": 3.0, "rate": 0.0}
    first = report["items"][0]
    assert first["path"].endswith("quiet1.wav") and first["duration"] == 1.0 and first["language"] == "en"
    assert first["base"] == {"text": "base 1.0s", "errors": 0} and first["robust"]["errors"] == 1
    assert first["router_score"] == pytest.approx(0.2, abs=1e-3) and first["forced_robust"] is False
    sweep = report["sweep"]
    assert sweep[0]["threshold"] == 0.0 and sweep[0]["errors"] == 2 and sweep[-1]["threshold"] == 1.0
    assert len(sweep) == 101 + 2  # the grid plus the two distinct levels (quiet and loud), off the grid


def test_plot_is_a_png(result, tmp_path):
    path = tmp_path / "plot.png"
    write_plot(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_summary_states_the_figures_and_the_verdict(result, tmp_path):
    text = summary(result, tmp_path)
    assert "Evaluated 4 items (0.1 min of audio, 8 reference words)" in text
    assert "base only        25.00 %  (2 errors, 0 items robust)" in text
    assert "oracle            0.00 %" in text
    assert "Only 4 items" in text
    assert "Recommendation: Use MEGA_ASR_THRESHOLD=0.8: 0.00 % with 2 items (50% of the audio)" in text
    assert "routed @ 0.8 " in text and "routed @ 0.5 " in text
    assert str(tmp_path / "report.json") in text


def test_an_item_only_the_robust_path_can_do(labelled_manifest):
    item = read_manifest(labelled_manifest)[0]
    transcripts = ItemTranscripts(item=item, duration=1.0, router_score=0.1, base=None,
                                  robust=PathTranscript("base 1.0s", "en"))
    scored = score_item(transcripts)
    assert scored.base == scored.robust and scored.outcome.forced_robust
    row = _item_row(scored)
    assert row["base"] is None and row["forced_robust"] is True


def test_detected_language_picks_the_scoring(labelled_manifest):
    from dataclasses import replace

    item = replace(read_manifest(labelled_manifest)[0], reference="這是測試", language=None)
    transcripts = ItemTranscripts(item=item, duration=1.0, router_score=0.1, base=PathTranscript("this", "en"),
                                  robust=PathTranscript("这是测试", "zh"))
    scored = score_item(transcripts)
    assert scored.language == "zh" and scored.robust.errors == 0 and scored.robust.unit == "char"


def test_report_dict_is_json_serialisable(result):
    json.dumps(report_dict(result))
