"""The qwen-asr peer's checkpoint: the benchmark model's own weights, written in the original layout that
qwen-asr loads (read back here through the production loader, which reads that layout strictly)."""

from __future__ import annotations

import json

import torch

from bench.full_size import DIMENSIONS
from bench.qwen_asr_peer import AUDIO_TOKENS, _budget, write_checkpoint
from bench.qwen_profile import build_bench_model
from models.qwen3_asr.checkpoint import load_qwen3_asr


def test_the_checkpoint_holds_the_services_weights_in_the_original_layout(tmp_path):
    directory = write_checkpoint(tmp_path / "ckpt", seed=3, dims="small")
    config = json.loads((directory / "config.json").read_text())
    assert "thinker_config" in config and config["thinker_config"]["text_config"]["rope_theta"] == 1_000_000.0
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert tokenizer_config["extra_special_tokens"] == AUDIO_TOKENS
    loaded, _ = load_qwen3_asr(directory)
    built, _ = build_bench_model(3, *DIMENSIONS["small"])
    expected = built.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_full_size_rope_sections_and_budgets_follow_the_service():
    from models.tiny.qwen3_asr import original_config_dict

    audio, text = DIMENSIONS["real"]
    config = original_config_dict(audio, text, mrope_section=(24, 20, 20))
    rope = config["thinker_config"]["text_config"]["rope_scaling"]
    assert rope["mrope_section"] == [24, 20, 20] and sum(rope["mrope_section"]) == text["head_dim"] // 2
    assert [_budget(s) for s in (0.5, 10.0, 30.0, 100.0)] == [10, 43, 113, 256]
