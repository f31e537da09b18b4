"""A random Mega-ASR adapter in the released PEFT format (DESIGN.md §4) for a given (tiny) Qwen3-ASR model.

It exercises every rule of the format: every Linear of the encoder, projector and LLM is a target; ranks and
alphas vary per module through rank_pattern / alpha_pattern; some modules have block scales in
mega_lora_blocks.json; some LLM modules also carry a legacy `thinker.layers.N.*` pair. B is not zero (as it
is right after PEFT init) so the robust path really differs from the base path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from models.tiny.qwen3_asr import to_original_key

_RANKS = (2, 4, 6)
_ALPHAS = (2, 8, 12)


def _raw_targets(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(to_original_key(name + ".weight")[: -len(".weight")], module)
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.startswith("model.")]


def _blocks(rank: int) -> list[dict[str, int]]:
    """Two blocks with different scales over the rank axis."""
    half = rank // 2
    return [{"start": 0, "end": half, "rank": half, "alpha": 3 * half},
            {"start": half, "end": rank, "rank": rank - half, "alpha": 1}]


def write_tiny_adapter(directory: str | Path, model: nn.Module, seed: int = 0, scale: float = 0.3,
                       ranks: tuple[int, ...] = _RANKS) -> Path:
    """Write adapter_config.json, adapter_model.safetensors and mega_lora_blocks.json into `directory`.
    `ranks` cycle over the targets (the released adapter: r=24, varying per module)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, int] = {}
    blocks: dict[str, list[dict[str, int]]] = {}
    raws = _raw_targets(model)
    legacy = [(raw.replace("thinker.model.layers.", "thinker.layers.", 1), module)
              for raw, module in raws if raw.startswith("thinker.model.layers.") and raw.endswith("up_proj")]
    for index, (raw, module) in enumerate(raws + legacy):
        rank = ranks[index % len(ranks)]
        out_features, in_features = module.weight.shape
        prefix = f"base_model.model.{raw}"
        tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, in_features, generator=generator) * scale
        tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_features, rank, generator=generator) * scale
        if index % 4 == 3:
            blocks[raw] = _blocks(rank)
        else:
            rank_pattern[raw] = rank
            alpha_pattern[raw] = _ALPHAS[index % len(_ALPHAS)]
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 24, "lora_alpha": 24, "lora_dropout": 0.0,
              "fan_in_fan_out": False, "bias": "none", "inference_mode": True, "target_modules": ".*",
              "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern}
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=1))
    (directory / "mega_lora_blocks.json").write_text(json.dumps(blocks, indent=1))
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory
