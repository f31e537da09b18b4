"""The Qwen3-ASR benchmark's alternatives to mixed batches compute the same results (on the tiny model)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from bench.qwen_profile import in_place_toggle, route_mix_comparison
from models.mega_adapter import MegaAdapter
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.adapter import write_tiny_adapter
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.fakes import assert_same_answers


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_recognizer(tmp_path):
    model, processor = build_tiny_qwen3_asr(seed=0)
    adapter_dir = write_tiny_adapter(tmp_path / "adapter", model, seed=2)
    recognizer = Qwen3ASRRecognizer(model, processor, adapter=MegaAdapter.attach(model, adapter_dir),
                                    max_new_tokens=10)
    return recognizer, adapter_dir


def audio(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * 16_000)).astype(np.float32)


def test_in_place_toggle_equals_the_gated_robust_path(tmp_path):
    recognizer, adapter_dir = tiny_recognizer(tmp_path)
    clips = [audio(1.0, 0), audio(1.7, 1)]
    gated = recognizer.recognize([RecognitionItem(a, robust=True, language="en") for a in clips])
    toggle = in_place_toggle(recognizer.model, adapter_dir)
    weights = {k: v.clone() for k, v in recognizer.model.state_dict().items()}
    toggle(True)
    merged = recognizer.recognize([RecognitionItem(a, language="en") for a in clips])
    toggle(False)
    assert_same_answers(merged, gated)
    after = recognizer.model.state_dict()
    # add-then-subtract is not exact in floating point: the upstream toggle drifts the base weights
    assert all(torch.allclose(weights[k], after[k], atol=1e-5) for k in weights)


def test_route_mix_ways_agree(tmp_path):
    recognizer, adapter_dir = tiny_recognizer(tmp_path)
    toggle = in_place_toggle(recognizer.model, adapter_dir)
    result = route_mix_comparison(recognizer, toggle, [audio(0.8 + i / 4, i) for i in range(4)], repeats=1)
    assert result["route_grouped_agreement"] == 1.0
    assert result["in_place_toggle_agreement"] == 1.0
    assert all(result[k] > 0 for k in ("mixed_batch", "route_grouped", "in_place_toggle"))
