"""A tiny Mega-ASR checkpoint directory in the released layout (DESIGN.md §4), for tests and the tests
profile: original-layout backbone, PEFT adapter with both namespaces and block scales, and the router."""

from __future__ import annotations

from pathlib import Path


def write_tiny_mega_asr(root: str | Path, seed: int = 0, router_format: str = "safetensors") -> Path:
    from models.qwen3_asr.checkpoint import load_qwen3_asr
    from models.tiny.adapter import write_tiny_adapter
    from models.tiny.qwen3_asr import save_tiny_original
    from models.tiny.router import write_router_checkpoint

    root = Path(root)
    backbone = save_tiny_original(root / "Qwen3-ASR-1.7B", seed=seed)
    model, _ = load_qwen3_asr(backbone)
    write_tiny_adapter(root / "mega-asr-merged", model, seed=seed)
    router_dir = root / "audio_quality_router"
    router_dir.mkdir(parents=True, exist_ok=True)
    suffix = "safetensors" if router_format == "safetensors" else "pt"
    write_router_checkpoint(router_dir / f"best_acc_model.{suffix}", fmt=router_format, seed=seed)
    return root
