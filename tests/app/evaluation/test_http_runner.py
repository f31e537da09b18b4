"""The HTTP runner against the real app under uvicorn, on a fake pipeline (tests/app/conftest.py)."""

from __future__ import annotations

import pytest

from app.evaluation.http_runner import HttpConfig, HttpRunner
from app.evaluation.manifest import read_manifest
from app.evaluation.runners import EvaluationError, InProcessRunner
from tests.app.evaluation.conftest import Clip, fake_pipeline, labelled_clips, tone_config, write_manifest
from tests.fakes import FakeRecognizer, tone

CONFIG = HttpConfig(concurrency=2, timeout_seconds=30, progress=False)


def transcribe(url: str, manifest, **kwargs):
    runner = HttpRunner(url, config=CONFIG, **kwargs)
    try:
        return runner.transcribe(read_manifest(manifest))
    finally:
        runner.close()


def test_http_answers_match_the_in_process_runner(fake_service, tmp_path):
    clips = labelled_clips() + [Clip("zh.wav", tone(1.5, 0.5), "你好", language="zh")]
    manifest = write_manifest(tmp_path, clips)
    base_url, recognizer = fake_service()
    warmup_batches = len(recognizer.batches)
    over_http = transcribe(base_url, manifest)
    local = InProcessRunner(fake_pipeline(), tone_config()).transcribe(read_manifest(manifest))
    assert [r.item for r in over_http] == [r.item for r in local]
    assert [(r.base, r.robust) for r in over_http] == [(r.base, r.robust) for r in local]
    assert [r.router_score for r in over_http] == pytest.approx([r.router_score for r in local], abs=1e-4)
    assert [r.duration for r in over_http] == pytest.approx([r.duration for r in local], abs=1e-3)
    assert over_http[-1].base is None and over_http[-1].robust.language == "zh"  # base refused Chinese
    # every English item reached the service once per path
    routes = [item.robust for batch in recognizer.batches[warmup_batches:] for item in batch]
    assert routes.count(False) == 4 and routes.count(True) == 5


def test_api_key_is_sent(fake_service, labelled_manifest):
    base_url, _ = fake_service(api_keys="sesame")
    with pytest.raises(EvaluationError, match="answered 401"):
        transcribe(base_url, labelled_manifest)
    assert len(transcribe(base_url, labelled_manifest, api_key="sesame")) == 4


def test_a_failing_item_names_the_item_and_the_service_message(fake_service, tmp_path):
    manifest = write_manifest(tmp_path, labelled_clips()[:2])
    (tmp_path / "loud1.wav").write_bytes(b"\x00\x01garbage that is no audio container" * 10)
    base_url, _ = fake_service()
    with pytest.raises(EvaluationError, match=r"loud1\.wav \(manifest line 3\): route=base answered 4\d\d: "):
        transcribe(base_url, manifest)


def test_an_unreachable_or_unready_service_is_reported(fake_service, labelled_manifest):
    with pytest.raises(EvaluationError, match="cannot reach the service"):
        transcribe("http://127.0.0.1:9", labelled_manifest)
    base_url, _ = fake_service(recognizer=FakeRecognizer(languages_robust=frozenset({"en"})))
    with pytest.raises(EvaluationError, match="transcribes language 'de' on neither path"):
        transcribe(base_url, write_manifest(labelled_manifest.parent / "de", [Clip("de.wav", tone(1.0), "x", "de")]))
