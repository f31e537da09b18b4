"""Build the Pipeline of a profile from settings: production, demo or tests (DESIGN.md §2)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.engine.words import WordTimer
from app.metrics import Metrics
from app.settings import Settings

if TYPE_CHECKING:
    from models.device import Placement

log = logging.getLogger("app.profiles")


def load_pipeline(settings: Settings, metrics: Metrics) -> Pipeline:
    """Every profile runs its recognizer on settings.device / settings.dtype (auto: models/device.py); the
    router stays float32 everywhere (it is <1 % of inference time and bf16 moves its scores)."""
    loaders = {"production": _production, "demo": _demo, "tests": _tests}
    started = time.perf_counter()
    pipeline = loaders[settings.profile](settings, metrics)
    metrics.model_load.labels(component="total").set(time.perf_counter() - started)
    return pipeline


def _placed(placement: Placement) -> dict[str, str]:
    """Pipeline keyword arguments naming the device and dtype, logged once."""
    log.info("recognizer device=%s dtype=%s (%s); router float32", placement.device_name,
             placement.dtype_name, placement.reason)
    return {"device": placement.device_name, "dtype": placement.dtype_name,
            "dtype_reason": placement.reason}


def _production(settings: Settings, metrics: Metrics) -> Pipeline:
    from models.mega_asr import load_mega_asr

    bundle = load_mega_asr(settings.model_dir, backbone_dir=settings.backbone_dir,
                           router_path=settings.router_path, device=settings.device, dtype=settings.dtype,
                           mode=_adapter_mode(settings), max_new_tokens=settings.max_new_tokens)
    for component, seconds in bundle.load_seconds.items():
        metrics.model_load.labels(component=component).set(seconds)
    words = _forced_aligner(settings.aligner_dir, bundle.placement, metrics) if settings.aligner_dir else None
    # The description is shown to clients (/v1/models): it names the models, never where they are.
    return Pipeline(bundle.recognizer, bundle.scorer, routing=settings.routing,
                    description="Mega-ASR: Qwen3-ASR-1.7B + Mega-ASR LoRA + router",
                    guards=GuardConfig.from_settings(settings), words=words, **_placed(bundle.placement))


def _forced_aligner(directory: Path, placement: Placement, metrics: Metrics) -> WordTimer:
    """Qwen3-ForcedAligner from its released layout (strictly loaded: a bad checkpoint stops the service),
    on the recognizer's device and dtype. Its times are used as they come (no speech-edge correction)."""
    from models.qwen3_asr.aligner import Qwen3ForcedAligner

    started = time.perf_counter()
    aligner = Qwen3ForcedAligner.from_dir(directory, placement.device, placement.dtype)
    metrics.model_load.labels(component="aligner").set(time.perf_counter() - started)
    return WordTimer(aligner, speech_edges=False)


def _tests(settings: Settings, metrics: Metrics) -> Pipeline:
    """Tiny random-weight Qwen3-ASR + adapter + router, written in the released layout to a temporary
    directory and loaded through the production loader (so the tests profile exercises it)."""
    from models.mega_asr import load_mega_asr
    from models.tiny.aligner import save_tiny_aligner_original
    from models.tiny.mega_asr import write_tiny_mega_asr

    root = Path(tempfile.mkdtemp(prefix="mega-asr-tiny-"))
    write_tiny_mega_asr(root)
    bundle = load_mega_asr(root, device=settings.device, dtype=settings.dtype, mode=_adapter_mode(settings),
                           max_new_tokens=min(settings.max_new_tokens, 32))
    for component, seconds in bundle.load_seconds.items():
        metrics.model_load.labels(component=component).set(seconds)
    aligner_dir = settings.aligner_dir or save_tiny_aligner_original(root / "Qwen3-ForcedAligner-0.6B")
    return Pipeline(bundle.recognizer, bundle.scorer, routing=settings.routing,
                    description="tiny random-weight Qwen3-ASR (tests profile)",
                    guards=GuardConfig.from_settings(settings),
                    words=_forced_aligner(aligner_dir, bundle.placement, metrics), **_placed(bundle.placement))


def _demo(settings: Settings, metrics: Metrics) -> Pipeline:
    from models.device import resolve_placement
    from models.router.checkpoint import load_router
    from models.router.scorer import RouterScorer
    from models.whisper.alignment import RoutedWhisperAligner, WhisperAligner
    from models.whisper.demo_models import ensure_demo_models
    from models.whisper.recognizer import RoutedWhisperRecognizer, WhisperRecognizer

    placement = resolve_placement(settings.device, settings.dtype)
    started = time.perf_counter()
    paths = ensure_demo_models(settings.cache_dir, progress=True)
    base = WhisperRecognizer.from_pretrained(paths.tiny_en, device=placement.device, dtype=placement.dtype,
                                             packed=placement.packed)
    robust = WhisperRecognizer.from_pretrained(paths.base, device=placement.device, dtype=placement.dtype,
                                               packed=placement.packed)
    # Word times on the model that decoded the segment, from its own cross-attention (no extra model).
    words = WordTimer(RoutedWhisperAligner(WhisperAligner(base), WhisperAligner(robust)),
                      speech_edges=settings.word_speech_edges)
    metrics.model_load.labels(component="recognizer").set(time.perf_counter() - started)
    started = time.perf_counter()
    router_path = settings.router_path or demo_router_path()
    model, _ = load_router(router_path)
    metrics.model_load.labels(component="router").set(time.perf_counter() - started)
    return Pipeline(RoutedWhisperRecognizer(base=base, robust=robust), RouterScorer(model, device=placement.device),
                    routing=settings.routing, guards=GuardConfig.from_settings(settings), words=words,
                    description="demo: Whisper tiny.en (clean) / base (degraded), demo router", **_placed(placement))


def demo_router_path() -> Path:
    import models

    return Path(models.__file__).parent / "assets" / "demo_router" / "best_acc_model.safetensors"


def _adapter_mode(settings: Settings) -> str:
    return {"router": "routed", "always_robust": "always_robust", "always_base": "routed"}[settings.routing]
