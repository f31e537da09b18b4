"""Loading Qwen3-ASR in both released layouts, and refusing anything that does not match exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.qwen3_asr.checkpoint import (
    ASR_CHAT_TEMPLATE,
    CheckpointError,
    convert_original_config,
    convert_original_key,
    detect_layout,
    load_qwen3_asr,
)
from models.tiny.qwen3_asr import build_tiny_qwen3_asr, original_config_dict, save_tiny_hf, save_tiny_original

SHARD_2 = "model-00002-of-00002.safetensors"  # the LLM half of the tiny original checkpoint


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen3_asr")
    return {"hf": save_tiny_hf(root / "hf", seed=3), "original": save_tiny_original(root / "original", seed=3)}


def copy_of(directory: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(directory, tmp_path / directory.name))


def model_inputs(processor) -> dict[str, torch.Tensor]:
    audio = np.random.default_rng(0).normal(0, 0.1, 16_000 * 3).astype(np.float32)
    messages = [{"role": "system", "content": "names: Ada"}, {"role": "user", "content": [{"type": "audio"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[prompt], audio=[audio], return_tensors="pt"))


def logits(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).logits


@pytest.mark.parametrize(
    ("original", "converted"),
    [
        ("thinker.audio_tower.layers.0.self_attn.q_proj.weight", "model.audio_tower.layers.0.self_attn.q_proj.weight"),
        ("thinker.audio_tower.layers.23.fc2.bias", "model.audio_tower.layers.23.fc2.bias"),
        ("thinker.audio_tower.conv_out.weight", "model.audio_tower.conv_out.weight"),
        ("thinker.audio_tower.conv2d1.bias", "model.audio_tower.conv2d1.bias"),
        ("thinker.audio_tower.ln_post.weight", "model.audio_tower.ln_post.weight"),
        ("thinker.audio_tower.proj1.weight", "model.multi_modal_projector.linear_1.weight"),
        ("thinker.audio_tower.proj2.bias", "model.multi_modal_projector.linear_2.bias"),
        ("thinker.model.layers.0.mlp.up_proj.weight", "model.language_model.layers.0.mlp.up_proj.weight"),
        ("thinker.model.embed_tokens.weight", "model.language_model.embed_tokens.weight"),
        ("thinker.model.norm.weight", "model.language_model.norm.weight"),
        ("thinker.lm_head.weight", "lm_head.weight"),
    ],
)
def test_original_key_conversion(original, converted):
    assert convert_original_key(original) == converted


def test_original_config_conversion():
    converted = convert_original_config(original_config_dict())
    assert "thinker_config" not in converted and "support_languages" not in converted
    audio, text = converted["audio_config"], converted["text_config"]
    assert audio["num_attention_heads"] == audio["num_key_value_heads"] == 4
    assert "encoder_attention_heads" not in audio and "max_source_positions" not in audio
    assert audio["max_position_embeddings"] == 13 and "model_type" not in audio
    assert text["rope_scaling"] == {"rope_type": "default"} and "model_type" not in text
    assert converted["audio_token_id"] == original_config_dict()["thinker_config"]["audio_token_id"]
    assert original_config_dict()["thinker_config"]["audio_config"]["encoder_attention_heads"] == 4  # untouched


def test_layouts_are_detected(layouts):
    assert detect_layout(layouts["hf"]) == "hf"
    assert detect_layout(layouts["original"]) == "original"


def test_both_layouts_load_the_same_model(layouts):
    reference, processor = build_tiny_qwen3_asr(seed=3)
    hf_model, hf_processor = load_qwen3_asr(layouts["hf"])
    original_model, original_processor = load_qwen3_asr(layouts["original"])
    inputs = model_inputs(processor)
    for other in (hf_processor, original_processor):
        assert torch.equal(model_inputs(other)["input_ids"], inputs["input_ids"])
    expected = logits(reference, inputs)
    assert torch.equal(logits(hf_model, inputs), expected)
    assert torch.equal(logits(original_model, inputs), expected)
    assert original_model.lm_head.weight is original_model.get_input_embeddings().weight
    assert not original_model.training


def test_load_honours_dtype(layouts):
    model, _ = load_qwen3_asr(layouts["original"], "cpu", torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}


def test_naive_from_pretrained_on_the_original_layout_silently_gives_random_weights(layouts):
    """The DANGER of DESIGN.md §3: transformers does not fail on the original layout."""
    from transformers import AutoConfig, Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    directory = layouts["original"]
    # Its config reads without error, as the default 1.7B sizes (thinker_config is ignored)...
    naive_config = AutoConfig.from_pretrained(str(directory))
    assert naive_config.text_config.hidden_size == 2048
    # ...and even with the right sizes, from_pretrained loads none of the thinker.* weights, without raising.
    config = Qwen3ASRConfig.from_dict(convert_original_config(json.loads((directory / "config.json").read_text())))
    naive, info = Qwen3ASRForConditionalGeneration.from_pretrained(str(directory), config=config,
                                                                  output_loading_info=True)
    assert info["unexpected_keys"] and info["missing_keys"]
    good, processor = load_qwen3_asr(directory)
    inputs = model_inputs(processor)
    assert not torch.allclose(logits(naive, inputs), logits(good, inputs))


def rewrite_shard(directory: Path, edit) -> None:
    tensors = load_file(str(directory / SHARD_2))
    edit(tensors)
    save_file(tensors, str(directory / SHARD_2), metadata={"format": "pt"})
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != SHARD_2}
    index["weight_map"].update({key: SHARD_2 for key in tensors})
    index_path.write_text(json.dumps(index))


def test_truncated_checkpoint_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    rewrite_shard(directory, lambda t: t.pop("thinker.model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing.*model\.language_model\.layers\.1\.mlp\.down_proj\.weight"):
        load_qwen3_asr(directory)


def test_extra_tensor_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    rewrite_shard(directory, lambda t: t.update({"thinker.model.layers.9.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected.*thinker\.model\.layers\.9\.extra\.weight"):
        load_qwen3_asr(directory)


def test_wrong_shape_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    key = "thinker.model.layers.0.self_attn.q_proj.weight"
    rewrite_shard(directory, lambda t: t.update({key: torch.zeros(8, 64)}))
    with pytest.raises(CheckpointError, match=r"shape.*thinker\.model\.layers\.0\.self_attn\.q_proj\.weight"):
        load_qwen3_asr(directory)


def test_hf_layout_with_missing_tensor_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["hf"], tmp_path)
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["model.audio_tower.conv_out.weight"]
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.audio_tower\.conv_out\.weight"):
        load_qwen3_asr(directory)


def test_tied_lm_head_that_differs_from_the_embedding_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    rewrite_shard(directory, lambda t: t["thinker.lm_head.weight"].add_(1.0))
    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        load_qwen3_asr(directory)


def test_tied_lm_head_may_be_absent(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    rewrite_shard(directory, lambda t: t.pop("thinker.lm_head.weight"))
    model, _ = load_qwen3_asr(directory)
    reference, _ = load_qwen3_asr(layouts["original"])
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)


def test_index_naming_a_tensor_the_shards_lack_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["thinker.model.ghost.weight"] = SHARD_2
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="thinker.model.ghost.weight"):
        load_qwen3_asr(directory)


def test_directory_without_weights_is_refused(layouts, tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    shutil.copy(layouts["hf"] / "config.json", directory / "config.json")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_qwen3_asr(directory)


def test_original_layout_without_chat_template_gets_the_asr_template(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    (directory / "chat_template.json").unlink()
    _, processor = load_qwen3_asr(directory)
    assert processor.chat_template == ASR_CHAT_TEMPLATE
    assert processor.audio_token == "<|audio_pad|>"
    messages = [{"role": "system", "content": "ctx"}, {"role": "user", "content": [{"type": "audio"}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>system\nctx<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>"
        "<|im_end|>\n<|im_start|>assistant\n")


def test_original_preprocessor_with_another_front_end_is_refused(layouts, tmp_path):
    directory = copy_of(layouts["original"], tmp_path)
    path = directory / "preprocessor_config.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), feature_size=80)))
    with pytest.raises(CheckpointError, match="feature_size"):
        load_qwen3_asr(directory)
