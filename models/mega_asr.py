"""One call loads Mega-ASR from a directory laid out like the Hub repo `zhifeixie/Mega-ASR`:

    Qwen3-ASR-1.7B/          backbone, original (thinker.*) layout — or an -hf directory via backbone_dir
    mega-asr-merged/         adapter_config.json, adapter_model.safetensors, mega_lora_blocks.json
    audio_quality_router/    best_acc_model.safetensors (older releases: best_acc_model.pt)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from models.recognition import QualityScorer, Recognizer

if TYPE_CHECKING:
    from models.device import Placement

AdapterMode = Literal["routed", "always_robust"]


class MegaASRLayoutError(FileNotFoundError):
    """The directory is not laid out like the Mega-ASR checkpoint."""


@dataclass
class MegaASR:
    recognizer: Recognizer
    scorer: QualityScorer
    placement: Placement  # the recognizer's device and dtype (the router stays float32)
    load_seconds: dict[str, float] = field(default_factory=dict)


def find_components(root: Path, backbone_dir: Path | None = None,
                    router_path: Path | None = None) -> tuple[Path, Path, Path]:
    root = Path(root)
    backbone = Path(backbone_dir) if backbone_dir else root / "Qwen3-ASR-1.7B"
    adapter = root / "mega-asr-merged"
    if router_path is None:
        candidates = [root / "audio_quality_router" / name
                      for name in ("best_acc_model.safetensors", "best_acc_model.pt")]
        router_path = next((c for c in candidates if c.is_file()), candidates[0])
    problems = [f"{p} is missing" for p in (backbone / "config.json", adapter / "adapter_config.json",
                                           adapter / "adapter_model.safetensors", Path(router_path))
                if not p.is_file()]
    if problems:
        raise MegaASRLayoutError(f"{root}: not a Mega-ASR checkpoint directory: " + "; ".join(problems))
    return backbone, adapter, Path(router_path)


def _pack(model: object, placement: Placement) -> None:
    """int8/fp16 weights for the layers models.linear_plans.QWEN3_ASR names, when the placement says so."""
    if placement.packed is not None:
        from models.linear_plans import pack_qwen3_asr

        pack_qwen3_asr(model, placement.packed)


def load_mega_asr(root: str | Path, *, backbone_dir: Path | None = None, router_path: Path | None = None,
                  device: str = "auto", dtype: str = "auto", mode: AdapterMode = "routed",
                  max_new_tokens: int = 256) -> MegaASR:
    """Backbone + adapter (row-gated, or merged once for always-robust) + router, all strictly loaded."""
    backbone, adapter_dir, router_file = find_components(Path(root), backbone_dir, router_path)
    from models.device import resolve_placement
    from models.mega_adapter import MegaAdapter, merge_adapter
    from models.qwen3_asr.checkpoint import load_qwen3_asr
    from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
    from models.router.checkpoint import load_router
    from models.router.scorer import RouterScorer

    placement = resolve_placement(device, dtype)
    torch_device, torch_dtype = placement.device, placement.dtype
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model, processor = load_qwen3_asr(backbone, torch_device, torch_dtype)
    seconds["backbone"] = time.perf_counter() - started
    started = time.perf_counter()
    if mode == "always_robust":
        merge_adapter(model, adapter_dir)  # into the float weights, before any packing
        _pack(model, placement)
        recognizer = Qwen3ASRRecognizer(model, processor, adapter=None, merged_robust=True,
                                        max_new_tokens=max_new_tokens)
    else:
        _pack(model, placement)
        adapter = MegaAdapter.attach(model, adapter_dir)  # after packing: hooks on the packed layers
        recognizer = Qwen3ASRRecognizer(model, processor, adapter=adapter, max_new_tokens=max_new_tokens)
    seconds["adapter"] = time.perf_counter() - started
    started = time.perf_counter()
    router, _ = load_router(router_file)
    scorer = RouterScorer(router, device=torch_device)  # float32 on every device: see models/router/scorer.py
    seconds["router"] = time.perf_counter() - started
    return MegaASR(recognizer=recognizer, scorer=scorer, placement=placement, load_seconds=seconds)
