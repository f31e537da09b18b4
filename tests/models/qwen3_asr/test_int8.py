"""Qwen3-ASR with int8 Linear layers (models/quantized.py, plan models.linear_plans.QWEN3_ASR) and the Mega-ASR
adapter attached to the packed layers: a segment decodes to the same tokens alone and batched, with rows
joining at different steps, base and robust rows mixed; the production loader packs in both adapter modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.linear_plans import QWEN3_ASR, pack_linears, pack_qwen3_asr
from models.mega_adapter import AdapterError, MegaAdapter, merge_adapter
from models.mega_asr import load_mega_asr
from models.quantized import PackedLinear, kernels_missing
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.adapter import write_tiny_adapter
from models.tiny.mega_asr import write_tiny_mega_asr
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.models.compare import assert_same_recognitions
from tests.models.decoding.test_sessions import ITEMS, run

pytestmark = pytest.mark.skipif(kernels_missing() is not None, reason=f"no FBGEMM kernels: {kernels_missing()}")


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Qwen3ASRRecognizer:
    model, processor = build_tiny_qwen3_asr(seed=0)
    adapter_dir = write_tiny_adapter(tmp_path_factory.mktemp("adapter"), model, seed=1)
    summary = pack_qwen3_asr(model, "int8")
    assert ", 0 left float32" in summary  # every Linear of the tiny model, encoder and LM head included
    adapter = MegaAdapter.attach(model, adapter_dir)  # after packing: its hooks sit on the packed layers
    return Qwen3ASRRecognizer(model, processor, device="cpu", dtype=torch.float32, adapter=adapter)


def test_the_adapter_targets_packed_layers(packed):
    modules = dict(packed.model.named_modules())
    targets = [modules[name] for name in packed.adapter.module_names]
    assert targets and all(isinstance(module, PackedLinear) for module in targets)
    audio = ITEMS[1].audio
    base, robust = packed.recognize([RecognitionItem(audio, language="en"),
                                     RecognitionItem(audio, robust=True, language="en")])
    assert base.text != robust.text  # the LoRA delta reaches the output of the packed layers


def test_int8_rows_joining_at_different_steps_equal_each_row_alone(packed):
    session = packed.open_session(8)
    results, _ = run(session, {0: [0], 2: [1], 5: [2, 3], 9: [4], 30: [5]})
    alone = [packed.recognize([item])[0] for item in ITEMS]
    assert_same_recognitions([results[i] for i in range(len(ITEMS))], alone)
    assert_same_recognitions(packed.recognize(ITEMS), alone)  # one batch from start to end


def test_merging_into_packed_layers_is_refused(tmp_path):
    model, _ = build_tiny_qwen3_asr(seed=0)
    adapter_dir = write_tiny_adapter(tmp_path / "adapter", model, seed=1)
    pack_linears(model, QWEN3_ASR, "int8")
    with pytest.raises(AdapterError, match="merge before packing"):
        merge_adapter(model, adapter_dir)


@pytest.mark.parametrize("mode", ["routed", "always_robust"])
def test_the_production_loader_packs_in_both_adapter_modes(tmp_path, mode):
    root = write_tiny_mega_asr(tmp_path)
    bundle = load_mega_asr(root, device="cpu", dtype="int8", mode=mode, max_new_tokens=8)
    assert bundle.placement.dtype_name == "int8" and bundle.placement.dtype == torch.float32
    assert any(isinstance(m, PackedLinear) for m in bundle.recognizer.model.modules())
    audio = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    results = bundle.recognizer.recognize([RecognitionItem(audio, robust=True)])
    assert len(results) == 1 and results[0].num_tokens <= 8
