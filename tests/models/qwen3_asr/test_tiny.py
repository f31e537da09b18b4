"""The tiny Qwen3-ASR fixture: the recipe of DESIGN.md §3, deterministic under its seed."""

from __future__ import annotations

import json

import numpy as np
import torch

from models.tiny.qwen3_asr import (
    SPECIAL_TOKENS,
    build_tiny_processor,
    build_tiny_qwen3_asr,
    save_tiny_hf,
    save_tiny_original,
    tiny_vocab,
)


def test_tokenizer_is_byte_level_with_the_special_tokens():
    tokenizer = build_tiny_processor().tokenizer
    assert len(tokenizer) == len(tiny_vocab()) == 256 + len(SPECIAL_TOKENS) + 1
    assert tokenizer.encode("é") == list("é".encode())  # bytes, no merges
    text = "language English<asr_text>héllo"
    ids = tokenizer.encode(text)
    assert tiny_vocab()["<asr_text>"] in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # <asr_text> is not special
    assert tokenizer.decode([tiny_vocab()["<|im_end|>"]], skip_special_tokens=True) == ""
    assert tokenizer.audio_token == "<|audio_pad|>" and tokenizer.audio_bos_token == "<|audio_start|>"


def test_config_keeps_the_real_front_end_and_ties_embeddings():
    model, processor = build_tiny_qwen3_asr()
    audio, text = model.config.audio_config, model.config.text_config
    assert (audio.num_mel_bins, audio.n_window, audio.n_window_infer) == (128, 50, 800)
    assert text.vocab_size == len(processor.tokenizer)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert model.config.audio_token_id == processor.audio_token_id


def test_same_seed_same_weights_and_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, _ = build_tiny_qwen3_asr(seed=1)
    assert torch.equal(torch.rand(1), before)  # the builder does not consume the caller's RNG
    second, _ = build_tiny_qwen3_asr(seed=1)
    other, _ = build_tiny_qwen3_asr(seed=2)
    for (name, a), (_, b), (_, c) in zip(first.state_dict().items(), second.state_dict().items(),
                                         other.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def test_generates_on_cpu():
    model, processor = build_tiny_qwen3_asr()
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": [{"type": "audio"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    audio = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    inputs = processor(text=[prompt], audio=[audio], return_tensors="pt")
    assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == 13  # 13 audio tokens per second
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tiny_vocab()["<|im_end|>"])
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_files_of_both_layouts(tmp_path):
    hf = {p.name for p in save_tiny_hf(tmp_path / "hf").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= hf
    original = save_tiny_original(tmp_path / "original")
    assert {p.name for p in original.iterdir()} == {
        "config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
        "preprocessor_config.json", "chat_template.json"}
    config = json.loads((original / "config.json").read_text())
    assert "thinker_config" in config and "support_languages" in config
    weight_map = json.loads((original / "model.safetensors.index.json").read_text())["weight_map"]
    assert all(key.startswith("thinker.") for key in weight_map)
    assert {"thinker.audio_tower.proj1.weight", "thinker.lm_head.weight", "thinker.model.norm.weight"} <= set(
        weight_map)
