"""One-call loading of a Mega-ASR directory in the released layout (tiny random weights)."""

from __future__ import annotations

import numpy as np
import pytest

from models.mega_asr import MegaASRLayoutError, load_mega_asr
from models.recognition import RecognitionItem
from models.tiny.mega_asr import write_tiny_mega_asr


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_mega_asr(tmp_path_factory.mktemp("mega-asr"))


def test_routed_mode_serves_both_paths_in_one_batch(tiny_root):
    bundle = load_mega_asr(tiny_root, device="cpu", dtype="float32", max_new_tokens=8)
    audio = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    results = bundle.recognizer.recognize([RecognitionItem(audio), RecognitionItem(audio, robust=True)])
    assert len(results) == 2 and all(r.num_tokens <= 8 for r in results)
    assert bundle.recognizer.languages(True) and bundle.recognizer.languages(False)
    assert set(bundle.load_seconds) == {"backbone", "adapter", "router"}
    assert len(bundle.scorer.score([audio, audio[:8000]])) == 2


def test_always_robust_mode_merges_the_adapter(tiny_root):
    bundle = load_mega_asr(tiny_root, device="cpu", dtype="float32", mode="always_robust", max_new_tokens=8)
    assert bundle.recognizer.languages(False) == frozenset()  # the base path is gone once merged
    audio = np.zeros(16_000, dtype=np.float32)
    with pytest.raises(ValueError, match="merged"):
        bundle.recognizer.recognize([RecognitionItem(audio)])


def test_legacy_router_file_is_found(tmp_path):
    root = write_tiny_mega_asr(tmp_path, router_format="pt")
    bundle = load_mega_asr(root, device="cpu", dtype="float32")
    assert 0.0 <= bundle.scorer.score([np.zeros(4000, dtype=np.float32)])[0] <= 1.0


def test_incomplete_directory_names_what_is_missing(tmp_path):
    with pytest.raises(MegaASRLayoutError, match="adapter_config.json is missing"):
        load_mega_asr(tmp_path)
