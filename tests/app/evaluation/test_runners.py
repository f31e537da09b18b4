"""The in-process runner on the real Pipeline with scripted fakes (tests/fakes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.manifest import read_manifest
from app.evaluation.runners import EvaluationError, InProcessRunner
from tests.app.evaluation.conftest import (
    LOUD,
    QUIET,
    Clip,
    fake_pipeline,
    labelled_clips,
    tone_config,
    write_manifest,
)
from tests.fakes import FakeRecognizer, FakeRouter, tone

QUIET_CONFIG = tone_config(batch_size=8)


def test_both_paths_once_each_and_one_router_score_per_item(labelled_manifest):
    router, recognizer = FakeRouter(), FakeRecognizer()
    runner = InProcessRunner(fake_pipeline(recognizer, router), QUIET_CONFIG)
    results = runner.transcribe(read_manifest(labelled_manifest))
    assert [r.item.path.name for r in results] == [c.name for c in labelled_clips()]
    assert [(r.base.text, r.robust.text) for r in results] == [
        ("base 1.0s", "robust 1.0s"), ("base 1.0s", "robust 1.0s"),
        ("base 2.0s", "robust 2.0s"), ("base 2.0s", "robust 2.0s")]
    # the router scored each clip once, in one call; the WAV round trip quantises the level a little
    assert router.calls == [4]
    assert [r.router_score for r in results] == pytest.approx([QUIET, LOUD, QUIET, LOUD], abs=1e-3)
    assert [r.duration for r in results] == [1.0, 1.0, 2.0, 2.0]
    # one mixed-route recognizer batch: every clip on both paths
    assert len(recognizer.batches) == 1
    assert [item.robust for item in recognizer.batches[0]] == [False, True] * 4


def test_batches_follow_the_batch_size(tmp_path):
    clips = [Clip(f"c{i}.wav", tone(0.5, 0.1 + 0.1 * i), "x") for i in range(5)]
    manifest = write_manifest(tmp_path, clips)
    router, recognizer = FakeRouter(), FakeRecognizer()
    InProcessRunner(fake_pipeline(recognizer, router), tone_config(batch_size=2)) \
        .transcribe(read_manifest(manifest))
    assert router.calls == [2, 2, 1]
    assert [len(batch) for batch in recognizer.batches] == [4, 4, 2]


def test_long_audio_is_segmented_like_the_service(tmp_path):
    # 40 s: quiet first half, loud second half; the file's score is its highest segment score
    audio = np.concatenate([tone(20.0, 0.3), tone(20.0, 0.9)])
    manifest = write_manifest(tmp_path, [Clip("long.wav", audio, "whatever")])
    router, recognizer = FakeRouter(), FakeRecognizer()
    [result] = InProcessRunner(fake_pipeline(recognizer, router), QUIET_CONFIG).transcribe(read_manifest(manifest))
    assert router.calls == [2]  # two segments, scored once each
    pieces = [item.duration for item in recognizer.batches[0] if not item.robust]
    assert len(pieces) == 2 and sum(pieces) == pytest.approx(40.0) and max(pieces) <= 30.0
    assert result.base.text == " ".join(f"base {s:.1f}s" for s in pieces)
    assert result.router_score == pytest.approx(0.9, abs=1e-3) and result.duration == 40.0


def test_silence_is_not_sent_to_the_model(tmp_path):
    manifest = write_manifest(tmp_path, [Clip("silence.wav", np.zeros(16_000, np.float32), "")])
    router, recognizer = FakeRouter(), FakeRecognizer()
    [result] = InProcessRunner(fake_pipeline(recognizer, router), QUIET_CONFIG).transcribe(read_manifest(manifest))
    assert result.router_score is None and result.base.text == "" and result.robust.text == ""
    assert router.calls == [] and recognizer.batches == []


def test_a_path_that_cannot_do_the_language_is_left_out(tmp_path):
    manifest = write_manifest(tmp_path, [Clip("zh.wav", tone(1.0, 0.1), "你好", language="zh")])
    recognizer = FakeRecognizer(languages_base=frozenset({"en"}), languages_robust=frozenset({"en", "zh"}))
    [result] = InProcessRunner(fake_pipeline(recognizer), QUIET_CONFIG).transcribe(read_manifest(manifest))
    assert result.base is None and result.robust.text == "robust 1.0s"
    assert result.router_score == pytest.approx(0.1, abs=1e-3)
    assert [item.robust for item in recognizer.batches[0]] == [True]


def test_a_language_no_path_can_do_is_an_error(tmp_path):
    manifest = write_manifest(tmp_path, [Clip("de.wav", tone(1.0), "hallo", language="de")])
    runner = InProcessRunner(fake_pipeline(FakeRecognizer(languages_robust=frozenset({"en"}))), QUIET_CONFIG)
    with pytest.raises(EvaluationError, match=r"de\.wav \(manifest line 2\): no recognition path .* 'de'"):
        runner.transcribe(read_manifest(manifest))


def test_undecodable_audio_names_the_item(tmp_path):
    manifest = write_manifest(tmp_path, labelled_clips()[:1])
    (tmp_path / "quiet1.wav").write_bytes(b"this is not audio at all, just text in a file")
    runner = InProcessRunner(fake_pipeline(), QUIET_CONFIG)
    with pytest.raises(EvaluationError, match=r"quiet1\.wav \(manifest line 2\): the upload is plain text"):
        runner.transcribe(read_manifest(manifest))


def test_a_deployment_without_both_paths_is_refused():
    merged = FakeRecognizer(languages_base=frozenset())  # base path not loaded (LoRA merged)
    with pytest.raises(EvaluationError, match="needs both paths"):
        InProcessRunner(fake_pipeline(merged), QUIET_CONFIG)
    from app.engine.pipeline import Pipeline

    with pytest.raises(EvaluationError, match="needs the router"):
        InProcessRunner(Pipeline(FakeRecognizer(), None, routing="always_base"), QUIET_CONFIG)
