"""The Mega-ASR adapter: format rules (scales, blocks, legacy namespace), strictness, and row-gated mixed
batches that equal a merged model on robust rows and the plain model on base rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.mega_adapter import AdapterError, MegaAdapter, fold, hf_module_name, merge_adapter, read_adapter
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import SAMPLE_RATE, RecognitionItem
from models.tiny.adapter import write_tiny_adapter
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.fakes import assert_same_answers

Q_PROJ = "thinker.model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    model, _ = build_tiny_qwen3_asr(seed=0)
    return write_tiny_adapter(tmp_path_factory.mktemp("adapter"), model, seed=1)


def clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * (120 + 70 * seed) * t * (1 + t)) + rng.normal(0, 0.05, t.size)).astype(
        np.float32)


def write_adapter(directory, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], config=None, blocks=None):
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for raw, (a, b) in pairs.items():
        tensors[f"base_model.model.{raw}.lora_A.weight"] = a
        tensors[f"base_model.model.{raw}.lora_B.weight"] = b
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(config or {"r": 2, "lora_alpha": 4}))
    if blocks is not None:
        (directory / "mega_lora_blocks.json").write_text(json.dumps(blocks))
    return directory


def test_module_names_follow_upstream_conventions():
    assert hf_module_name("thinker.audio_tower.layers.3.fc1") == "model.audio_tower.layers.3.fc1"
    assert hf_module_name("thinker.audio_tower.conv_out") == "model.audio_tower.conv_out"
    assert hf_module_name("thinker.audio_tower.proj1") == "model.multi_modal_projector.linear_1"
    assert hf_module_name("thinker.audio_tower.proj2") == "model.multi_modal_projector.linear_2"
    assert hf_module_name(Q_PROJ) == "model.language_model.layers.0.self_attn.q_proj"
    assert hf_module_name("thinker.layers.0.self_attn.q_proj") == "model.language_model.layers.0.self_attn.q_proj"


def test_scales_patterns_blocks_and_legacy_pairs_fold_into_one_delta(tmp_path):
    g = torch.Generator().manual_seed(0)
    a1, b1 = torch.randn(2, 64, generator=g), torch.randn(64, 2, generator=g)
    a2, b2 = torch.randn(4, 64, generator=g), torch.randn(64, 4, generator=g)
    a3, b3 = torch.randn(3, 64, generator=g), torch.randn(64, 3, generator=g)
    legacy = "thinker.layers.0.self_attn.q_proj"
    fc1 = "thinker.audio_tower.layers.0.self_attn.k_proj"
    config = {"r": 2, "lora_alpha": 4, "rank_pattern": {legacy: 4}, "alpha_pattern": {legacy: 1}}
    blocks = {fc1: [{"start": 0, "end": 1, "rank": 1, "alpha": 5}, {"start": 1, "end": 3, "rank": 2, "alpha": 1}]}
    pairs = read_adapter(write_adapter(tmp_path / "a", {Q_PROJ: (a1, b1), legacy: (a2, b2), fc1: (a3, b3)},
                                       config, blocks))
    q = fold(pairs["model.language_model.layers.0.self_attn.q_proj"]).delta()
    torch.testing.assert_close(q, b1 @ a1 * (4 / 2) + b2 @ a2 * (1 / 4))  # both namespaces, added
    k = fold(pairs["model.audio_tower.layers.0.self_attn.k_proj"]).delta()
    torch.testing.assert_close(k, b3[:, :1] @ a3[:1] * 5 + b3[:, 1:] @ a3[1:] * 0.5)  # block scales win


@pytest.mark.parametrize("problem", ["unknown_module", "missing_b", "bad_shape", "stray_key", "rank_mismatch"])
def test_adapter_that_does_not_fit_is_refused(tmp_path, problem):
    model, _ = build_tiny_qwen3_asr(seed=0)
    a, b = torch.randn(2, 64), torch.randn(64, 2)
    pairs = {Q_PROJ: (a, b)}
    config = None
    if problem == "unknown_module":
        pairs = {"thinker.model.layers.9.self_attn.q_proj": (a, b)}
    elif problem == "bad_shape":
        pairs = {Q_PROJ: (torch.randn(2, 32), b)}
    elif problem == "rank_mismatch":
        config = {"r": 3, "lora_alpha": 3}
    directory = write_adapter(tmp_path / "a", pairs, config)
    state = load_file(str(directory / "adapter_model.safetensors"))
    if problem == "missing_b":
        state.pop(f"base_model.model.{Q_PROJ}.lora_B.weight")
    if problem == "stray_key":
        state["base_model.model.thinker.lm_head.magnitude"] = torch.zeros(3)
    save_file(state, str(directory / "adapter_model.safetensors"))
    with pytest.raises(AdapterError):
        MegaAdapter.attach(model, directory)


def test_missing_or_corrupt_files_are_refused(tmp_path, adapter_dir):
    model, _ = build_tiny_qwen3_asr(seed=0)
    with pytest.raises(AdapterError, match="adapter_config.json is missing"):
        MegaAdapter.attach(model, tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((adapter_dir / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(AdapterError, match="cannot read adapter weights"):
        MegaAdapter.attach(model, broken)


def _recognizers(adapter_dir):
    gated_model, processor = build_tiny_qwen3_asr(seed=0)
    adapter = MegaAdapter.attach(gated_model, adapter_dir)
    plain_model, _ = build_tiny_qwen3_asr(seed=0)
    merged_model, _ = build_tiny_qwen3_asr(seed=0)
    assert merge_adapter(merged_model, adapter_dir) == len(adapter.module_names)
    return (Qwen3ASRRecognizer(gated_model, processor, adapter=adapter, max_new_tokens=12),
            Qwen3ASRRecognizer(plain_model, processor, max_new_tokens=12),
            Qwen3ASRRecognizer(merged_model, processor, merged_robust=True, max_new_tokens=12))


def test_mixed_batch_equals_merged_model_on_robust_rows_and_plain_model_on_base_rows(adapter_dir):
    gated, plain, merged = _recognizers(adapter_dir)
    audios = [clip(1.3, 0), clip(2.6, 1), clip(0.7, 2), clip(3.1, 3)]  # mixed lengths: padding in the batch
    robust = [True, False, False, True]
    mixed = gated.recognize([RecognitionItem(a, robust=r, language="en") for a, r in zip(audios, robust)])
    base_alone = plain.recognize([RecognitionItem(a, language="en") for a in audios])
    robust_alone = merged.recognize([RecognitionItem(a, robust=True, language="en") for a in audios])
    assert_same_answers(mixed, [(r if is_robust else b) for r, b, is_robust in zip(robust_alone, base_alone, robust)])
    assert any(b.text != r.text for b, r in zip(base_alone, robust_alone))  # the adapter changes the output


def test_gated_logits_match_merged_and_plain_models(adapter_dir):
    gated, plain, merged = _recognizers(adapter_dir)
    items = [RecognitionItem(clip(1.0, 4), robust=True), RecognitionItem(clip(2.2, 5), robust=False)]
    batch = gated._collate([gated._encode(i) for i in items])
    with torch.inference_mode():
        with gated.adapter.rows([True, False]):
            mixed = gated.model(**batch).logits
        robust_ref = merged.model(**batch).logits
        base_ref = plain.model(**batch).logits
        outside = gated.model(**batch).logits  # no rows context: the base path
    torch.testing.assert_close(mixed[0], robust_ref[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mixed[1], base_ref[1], atol=0, rtol=0)
    torch.testing.assert_close(outside, base_ref, atol=0, rtol=0)
    assert (robust_ref[0] - base_ref[0]).abs().max() > 1e-2


def test_base_weights_stay_bit_identical_after_many_batches(adapter_dir):
    gated, _, _ = _recognizers(adapter_dir)
    before = {k: v.clone() for k, v in gated.model.state_dict().items()}
    for step in range(4):
        gated.recognize([RecognitionItem(clip(0.8 + step / 3, step), robust=bool((step + i) % 2))
                         for i in range(3)])
    after = gated.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_detach_restores_the_plain_model(adapter_dir):
    gated, plain, _ = _recognizers(adapter_dir)
    gated.adapter.detach()
    items = [RecognitionItem(clip(1.1, 6), language="en")]
    assert_same_answers(gated.recognize(items), plain.recognize(items))


def test_tiny_adapter_uses_every_format_rule(adapter_dir):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    blocks = json.loads((adapter_dir / "mega_lora_blocks.json").read_text())
    keys = load_file(str(adapter_dir / "adapter_model.safetensors")).keys()
    assert config["rank_pattern"] and config["alpha_pattern"] and blocks
    assert any(".thinker.layers." in k for k in keys) and any(".thinker.model.layers." in k for k in keys)
    assert any("audio_tower.conv_out" in k for k in keys) and any("audio_tower.proj1" in k for k in keys)
