"""The Mega-ASR adapter (DESIGN.md §4): a PEFT LoRA directory read strictly, folded into one factored pair
per module, and either row-gated on a live model (mixed-route batches) or merged into the weights.

Directory: adapter_config.json (r, lora_alpha, rank_pattern, alpha_pattern), adapter_model.safetensors
(`base_model.model.thinker.<module>.lora_{A,B}.weight`), optional mega_lora_blocks.json
({raw module name: [{start, end, rank, alpha}, ...]}). A legacy `thinker.layers.N.*` pair targets the same
module as `thinker.model.layers.N.*` and both deltas apply: they are concatenated on the rank axis.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from models.lora import (
    GatedLoRAHook,
    Location,
    LoRAPair,
    RowGate,
    check_pair_fits,
    gated_rows,
    pair_placement,
)
from models.qwen3_asr.checkpoint import convert_original_key

_PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}


class AdapterError(ValueError):
    """The adapter directory cannot be applied to this model, and says why."""


def hf_module_name(raw: str) -> str:
    """Raw PEFT module name (`thinker.layers.3.mlp.up_proj`) -> module name in the transformers model."""
    if raw.startswith("thinker.layers."):  # legacy namespace: the same LLM module (upstream lora_switch.py)
        raw = "thinker.model.layers." + raw[len("thinker.layers."):]
    if not raw.startswith("thinker."):
        raise AdapterError(f"adapter module {raw!r} is not under `thinker.`")
    return convert_original_key(raw + ".weight")[: -len(".weight")]


def read_adapter(directory: str | Path) -> dict[str, list[tuple[str, LoRAPair]]]:
    """{module name in the model: [(raw name, scaled pair), ...]}; scales folded, blocks applied."""
    directory = Path(directory)
    config = _read_json(directory / "adapter_config.json", required=True)
    _check_config(directory, config)
    blocks = _read_json(directory / "mega_lora_blocks.json", required=False)
    pairs: dict[str, list[tuple[str, LoRAPair]]] = {}
    for raw, factors in _raw_factors(directory / "adapter_model.safetensors").items():
        pair = _scaled_pair(raw, factors["A"].float(), factors["B"].float(), config, blocks.get(raw))
        pairs.setdefault(hf_module_name(raw), []).append((raw, pair))
    return pairs


def fold(pairs: list[tuple[str, LoRAPair]]) -> LoRAPair:
    """Several pairs on one module (current + legacy namespace) -> one pair: concatenate the rank axis."""
    return LoRAPair(A=torch.cat([p.A for _, p in pairs], dim=0), B=torch.cat([p.B for _, p in pairs], dim=1))


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise AdapterError(f"{path} is missing")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: not valid JSON ({exc})") from None


def _check_config(directory: Path, config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{directory}: peft_type {config.get('peft_type')!r} is not LORA")
    for flag in ("fan_in_fan_out", "use_dora"):
        if config.get(flag):
            raise AdapterError(f"{directory}: {flag}=true is not supported by the Mega-ASR adapter format")
    if not isinstance(config.get("r"), int) or "lora_alpha" not in config:
        raise AdapterError(f"{directory}/adapter_config.json: needs integer `r` and `lora_alpha`")


def _raw_factors(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{path}: cannot read adapter weights ({exc})") from None
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if not key.startswith(_PREFIX) or suffix is None or tensor.ndim != 2:
            raise AdapterError(f"{path}: unexpected adapter tensor {key!r} {tuple(tensor.shape)}")
        factors.setdefault(key[len(_PREFIX): -len(suffix)], {})[_SUFFIXES[suffix]] = tensor
    incomplete = sorted(raw for raw, f in factors.items() if set(f) != {"A", "B"})
    if incomplete:
        raise AdapterError(f"{path}: lora_A/lora_B missing for {incomplete[:5]} ({len(incomplete)} modules)")
    return factors


def _scaled_pair(raw: str, a: torch.Tensor, b: torch.Tensor, config: dict[str, Any],
                 blocks: list[dict[str, Any]] | None) -> LoRAPair:
    """Fold α/r into B: per block `Δ = Σ_b B[:, s:e] A[s:e] · α_b / r_b`, else `Δ = B A · α / r`."""
    rank = a.shape[0]
    if b.shape[1] != rank:
        raise AdapterError(f"{raw}: lora_A rank {rank} != lora_B rank {b.shape[1]}")
    scale = torch.empty(rank)
    if blocks:
        covered = 0
        for block in blocks:
            start, end = int(block["start"]), int(block["end"])
            block_rank = int(block.get("rank", end - start))
            if start != covered or end > rank or end <= start:
                raise AdapterError(f"{raw}: blocks must tile the rank axis 0..{rank}, got {blocks}")
            scale[start:end] = float(block.get("alpha", block_rank)) / block_rank
            covered = end
        if covered != rank:
            raise AdapterError(f"{raw}: blocks cover ranks 0..{covered} of {rank}")
    else:
        module_rank = config.get("rank_pattern", {}).get(raw, config["r"])
        alpha = config.get("alpha_pattern", {}).get(raw, config["lora_alpha"])
        if module_rank != rank:
            raise AdapterError(f"{raw}: rank {rank} in the weights but {module_rank} in adapter_config.json")
        scale.fill_(alpha / (math.sqrt(rank) if config.get("use_rslora") else rank))
    return LoRAPair(A=a.contiguous(), B=(b * scale).contiguous())


def _location(name: str) -> Location:
    if name.endswith("audio_tower.conv_out"):
        return "chunks"
    if ".audio_tower." in name or ".multi_modal_projector." in name:
        return "tokens"
    if ".language_model." in name:
        return "text"
    raise AdapterError(f"adapter module {name!r} is neither in the audio encoder, projector nor LLM")


def adapter_targets(model: nn.Module, directory: str | Path) -> list[tuple[str, nn.Module, LoRAPair]]:
    """(module name, module, folded pair in the module's device and dtype) for every adapter target; strict.
    Targets may be packed Linears (models.quantized): the pair then stays float32 and factored."""
    modules = dict(model.named_modules())
    targets = []
    for name, pairs in read_adapter(directory).items():
        if name not in modules:
            raw = ", ".join(r for r, _ in pairs)
            raise AdapterError(f"{directory}: adapter module {raw} -> {name} does not exist in the model")
        pair = fold(pairs)
        try:
            check_pair_fits(name, modules[name], pair)
        except (TypeError, ValueError) as exc:
            raise AdapterError(f"{directory}: {exc}") from None
        device, dtype = pair_placement(modules[name])
        targets.append((name, modules[name], LoRAPair(pair.A.to(device, dtype), pair.B.to(device, dtype))))
    if not targets:
        raise AdapterError(f"{directory}: the adapter holds no LoRA pairs")
    return targets


def merge_adapter(model: nn.Module, directory: str | Path) -> int:
    """W += B A for every target (always-robust serving: no per-row cost). Returns the modules merged."""
    targets = adapter_targets(model, directory)
    packed = [name for name, module, _ in targets if not isinstance(module, nn.Linear)]
    if packed:
        raise AdapterError(f"{directory}: cannot merge into packed (int8/fp16) layers such as {packed[0]}: "
                           "merge before packing")
    with torch.no_grad():
        for _, module, pair in targets:
            module.weight.add_((pair.B.float() @ pair.A.float()).to(module.weight.dtype))
    return len(targets)


class MegaAdapter:
    """The adapter attached by hooks; `rows(robust)` gates it per batch row (models.qwen3_asr.recognizer)."""

    def __init__(self, model: nn.Module, targets: list[tuple[str, nn.Module, LoRAPair]]) -> None:
        self.gate = RowGate(device=next(model.parameters()).device)
        self.module_names = [name for name, _, _ in targets]
        self.num_parameters = sum(p.A.numel() + p.B.numel() for _, _, p in targets)
        self._handles = [module.register_forward_hook(GatedLoRAHook(pair, self.gate, _location(name)))
                         for name, module, pair in targets]
        self._encoder = model.get_submodule("model.audio_tower")
        self._handles.append(self._encoder.register_forward_pre_hook(self._audio_layout, with_kwargs=True))

    @classmethod
    def attach(cls, model: nn.Module, directory: str | Path) -> MegaAdapter:
        return cls(model, adapter_targets(model, directory))

    def rows(self, robust: Sequence[bool]) -> contextlib.AbstractContextManager:
        return gated_rows(self.gate, robust)

    def audio_layout(self, features_mask: torch.Tensor) -> None:
        """The encoder input of the current rows, for models.qwen3_asr.encoder (which skips empty chunks);
        transformers' own encoder forward sets the layout through the pre-hook instead."""
        self.gate.set_audio_layout(features_mask, self._encoder.n_window * 2, self._encoder._post_cnn_length,
                                   skip_empty_chunks=True)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _audio_layout(self, encoder: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("input_features_mask", args[1] if len(args) > 1 else None)
        if mask is None:
            raise RuntimeError("the audio encoder was called without input_features_mask")
        self.gate.set_audio_layout(mask, encoder.n_window * 2, encoder._post_cnn_length)
