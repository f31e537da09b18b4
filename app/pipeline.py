"""The model-side step of one batch: score every segment with the router in one call, pick each
segment's route, and decode the whole batch in one recognizer call with per-item routes.

This runs on the single inference worker thread, never on the event loop. It knows nothing of HTTP or
queues: it takes a list of jobs and returns a list of results of the same length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.recognition import QualityScorer, Recognition, RecognitionItem, Recognizer, TimedText

RouteRequest = Literal["auto", "base", "robust"]
Routing = Literal["router", "always_robust", "always_base"]


@dataclass(frozen=True)
class SegmentJob:
    """One segment (≤ 30 s) of one request, as it enters the queue."""

    audio: np.ndarray  # [samples] float32 mono 16 kHz
    route: RouteRequest = "auto"
    threshold: float = 0.5
    language: str | None = None  # ISO code
    context: str = ""

    @property
    def seconds(self) -> float:
        return len(self.audio) / 16_000


@dataclass(frozen=True)
class SegmentResult:
    text: str
    language: str | None
    route: Literal["base", "robust"]
    router_score: float | None
    reason: str  # why this route: router | request | config | language
    num_tokens: int
    spans: tuple[TimedText, ...] = ()


@dataclass
class BatchTiming:
    router_seconds: float = 0.0
    recognizer_seconds: float = 0.0
    routes: list[str] = field(default_factory=list)


class LanguageNotSupported(ValueError):
    """No recognition path can transcribe the requested language."""


class RouteNotAvailable(ValueError):
    """The requested route is not served by this deployment."""


class Pipeline:
    """Router + recognizer, as loaded for one profile."""

    def __init__(self, recognizer: Recognizer, scorer: QualityScorer | None, *, routing: Routing = "router",
                 description: str = "", device: str = "unknown", dtype: str = "unknown",
                 dtype_reason: str = "") -> None:
        if routing == "router" and scorer is None:
            raise ValueError("routing='router' needs a router (quality scorer)")
        self.recognizer = recognizer
        self.scorer = scorer
        self.routing = routing
        self.description = description
        # Where the recognizer runs ("cpu", "cuda:0") and in which dtype ("float32", "bfloat16"), and why:
        # shown by the startup log, /v1/models and the asr_model_info metric. "unknown" for fakes.
        self.device = device
        self.dtype = dtype
        self.dtype_reason = dtype_reason

    def score(self, waveforms: Sequence[np.ndarray]) -> list[float | None]:
        if self.scorer is None:
            return [None] * len(waveforms)
        scores = self.scorer.score(list(waveforms))
        _check_length("router", scores, waveforms)
        return [float(s) for s in scores]

    def check_route(self, route: RouteRequest) -> None:
        """Raise RouteNotAvailable at admission when a forced route is not loaded (a path that supports
        no language at all, e.g. the base path of an always-robust deployment with the LoRA merged)."""
        if route != "auto" and self.recognizer.languages(route == "robust") == frozenset():
            raise RouteNotAvailable(f"the {route} path is not available in this deployment")

    def supports(self, robust: bool, language: str | None) -> bool:
        """Whether the given path can transcribe `language` (None: let the model detect it, always fine)."""
        languages = self.recognizer.languages(robust)
        return languages is None or language is None or language in languages

    def check_language(self, language: str | None, route: RouteRequest) -> None:
        """Raise LanguageNotSupported at admission when no allowed path can do `language`."""
        if language is None:
            return
        candidates = {"base": [False], "robust": [True], "auto": [False, True]}[route]
        if self.routing == "always_robust":
            candidates = [True] if route == "auto" else candidates
        if self.routing == "always_base":
            candidates = [False] if route == "auto" else candidates
        if not any(self.supports(robust, language) for robust in candidates):
            raise LanguageNotSupported(f"language {language!r} is not supported by the "
                                       f"{'requested' if route != 'auto' else 'available'} recognition path")

    def run_batch(self, jobs: Sequence[SegmentJob], timing: BatchTiming | None = None) -> list[SegmentResult]:
        timing = timing if timing is not None else BatchTiming()
        started = time.perf_counter()
        scores = self.score([job.audio for job in jobs])
        timing.router_seconds = time.perf_counter() - started
        decisions = [self._decide(job, score) for job, score in zip(jobs, scores)]
        items = [RecognitionItem(audio=job.audio, robust=robust, language=job.language, context=job.context)
                 for job, (robust, _) in zip(jobs, decisions)]
        started = time.perf_counter()
        recognitions = self.recognizer.recognize(items)
        timing.recognizer_seconds = time.perf_counter() - started
        _check_length("recognizer", recognitions, items)
        timing.routes = ["robust" if robust else "base" for robust, _ in decisions]
        return [_result(rec, robust, reason, score)
                for rec, (robust, reason), score in zip(recognitions, decisions, scores)]

    def _decide(self, job: SegmentJob, score: float | None) -> tuple[bool, str]:
        if job.route != "auto":
            robust, reason = job.route == "robust", "request"
        elif self.routing != "router":
            robust, reason = self.routing == "always_robust", "config"
        else:
            assert score is not None
            robust, reason = score >= job.threshold, "router"
        if job.language and not self.supports(robust, job.language):
            # Admission checked that some path can do it; an auto choice moves to that path.
            if job.route != "auto" or not self.supports(not robust, job.language):
                raise LanguageNotSupported(f"language {job.language!r} not supported on the chosen path")
            robust, reason = not robust, "language"
        return robust, reason


def _check_length(what: str, out: Sequence, inp: Sequence) -> None:
    if len(out) != len(inp):
        raise RuntimeError(f"{what} returned {len(out)} results for {len(inp)} inputs")


def _result(rec: Recognition, robust: bool, reason: str, score: float | None) -> SegmentResult:
    return SegmentResult(text=rec.text, language=rec.language, route="robust" if robust else "base",
                         router_score=score, reason=reason, num_tokens=rec.num_tokens, spans=rec.segments)
