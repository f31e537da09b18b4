"""The model side of a segment: score segments with the router (one call for all that arrive together),
pick each one's route, and turn the recognizer's answer into the service's result, every recognized text
passing the hallucination guards (app/engine/guards.py), the same for every recognizer.

The batcher's engine (app.engine.iteration) routes the segments that join the running rows and finishes each row when
it ends; run_batch does route -> recognize -> finish for a whole batch at once (warm-up, evaluation).
This runs on the single inference worker thread, never on the event loop. It knows nothing of HTTP or
queues: it takes a list of jobs and returns a list of results of the same length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from app.engine.guards import GuardConfig, GuardEvent, check
from app.engine.words import Runs, WordRequest, WordsNotAvailable, WordTimer
from models.recognition import (
    AlignmentItem,
    QualityScorer,
    Recognition,
    RecognitionItem,
    Recognizer,
    TimedText,
    Word,
)

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
    words: bool = False  # word times asked for
    speech: Runs = ()  # silero's speech runs in the segment (seconds from its start), for word requests

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
    flags: tuple[str, ...] = ()  # guards that kept the text but say why to doubt it (README: no invented text)
    guards: tuple[GuardEvent, ...] = ()  # what the guards did, for the metrics
    words: tuple[Word, ...] = ()  # word times (seconds from the segment start) when they were asked for


@dataclass(frozen=True)
class RoutedJob:
    """A segment with its route decided: what the recognizer decodes, and why it took that path."""

    item: RecognitionItem
    reason: str  # router | request | config | language
    score: float | None  # P(degraded), None without a router
    speech: Runs = ()  # the job's speech runs (word requests)

    @property
    def route(self) -> Literal["base", "robust"]:
        return "robust" if self.item.robust else "base"


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
                 description: str = "", guards: GuardConfig | None = None, device: str = "unknown",
                 dtype: str = "unknown", dtype_reason: str = "", words: WordTimer | None = None) -> None:
        if routing == "router" and scorer is None:
            raise ValueError("routing='router' needs a router (quality scorer)")
        self.recognizer = recognizer
        self.scorer = scorer
        self.routing = routing
        self.description = description
        self.guards = guards if guards is not None else GuardConfig()
        # Where the recognizer runs ("cpu", "cuda:0") and in which dtype ("float32", "bfloat16"), and why:
        # shown by the startup log, /v1/models and the asr_model_info metric. "unknown" for fakes.
        self.device = device
        self.dtype = dtype
        self.dtype_reason = dtype_reason
        self.words = words  # None: this deployment has no aligner (word requests are refused)

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

    def route(self, jobs: Sequence[SegmentJob]) -> list[RoutedJob]:
        """The router scores every job in one call; each job gets its route and its recognition item."""
        scores = self.score([job.audio for job in jobs])
        routed = []
        for job, score in zip(jobs, scores):
            robust, reason = self._decide(job, score)
            item = RecognitionItem(audio=job.audio, robust=robust, language=job.language, context=job.context,
                                   words=job.words)
            routed.append(RoutedJob(item=item, reason=reason, score=score, speech=job.speech))
        return routed

    def finish(self, routed: RoutedJob, rec: Recognition) -> SegmentResult:
        """The service's result for a recognized segment, after the hallucination guards."""
        item = routed.item
        guarded = check(rec.text, avg_logprob=rec.avg_logprob, no_speech_prob=rec.no_speech_prob,
                        language=self.expected_language(item.language, item.robust), config=self.guards)
        # Changed text loses the model's finer timestamps (they timed the words that were cut); blanked text
        # was heard in no language, so only a language the caller forced is reported.
        spans = rec.segments if guarded.text == rec.text.strip() else ()
        language = item.language if guarded.blanked else rec.language
        return SegmentResult(text=guarded.text, language=language, route=routed.route, router_score=routed.score,
                             reason=routed.reason, num_tokens=rec.num_tokens, spans=spans, flags=guarded.flags,
                             guards=guarded.events)

    def check_words(self, language: str | None, route: RouteRequest) -> None:
        """Raise WordsNotAvailable at admission when word times cannot be given: no aligner, or a requested
        language that no allowed path's aligner knows."""
        if self.words is None:
            raise WordsNotAvailable("word timestamps are not available in this deployment: it has no aligner "
                                    "(production: set MEGA_ASR_ALIGNER_DIR to a Qwen3-ForcedAligner-0.6B "
                                    "directory, fetched by `mega-asr-server download`)")
        paths = {"base": [False], "robust": [True], "auto": [False, True]}[route]
        if language and not any(self.words.can_align(robust, language) for robust in paths):
            raise WordsNotAvailable(f"word timestamps are not available for language {language!r}")

    def align(self, finished: Sequence[tuple[RoutedJob, Recognition, SegmentResult]]) -> list[SegmentResult]:
        """Word times for finished segments that asked for them, in one aligner call; results in order. A
        segment without text has no words; one whose language the aligner does not know is flagged
        `words_unavailable`."""
        if self.words is None:
            raise WordsNotAvailable("no aligner")
        requests, targets = [], []
        out = [result for _, _, result in finished]
        for index, (routed, rec, result) in enumerate(finished):
            if not result.text:
                continue
            if not self.words.can_align(routed.item.robust, result.language):
                out[index] = replace(result, flags=(*result.flags, "words_unavailable"))
                continue
            own = result.text == rec.text.strip()  # the guards kept the model's text: its tokens still apply
            item = AlignmentItem(audio=routed.item.audio, text=result.text, language=result.language,
                                 robust=routed.item.robust, tokens=rec.tokens if own else (),
                                 state=rec.alignment_state)
            requests.append(WordRequest(item=item, speech=routed.speech))
            targets.append(index)
        for index, words in zip(targets, self.words.align(requests), strict=True):
            out[index] = replace(out[index], words=words)
        return out

    def run_batch(self, jobs: Sequence[SegmentJob], timing: BatchTiming | None = None) -> list[SegmentResult]:
        """Route and decode a whole batch at once (one recognize() call)."""
        timing = timing if timing is not None else BatchTiming()
        started = time.perf_counter()
        routed = self.route(jobs)
        timing.router_seconds = time.perf_counter() - started
        started = time.perf_counter()
        recognitions = self.recognizer.recognize([r.item for r in routed])
        timing.recognizer_seconds = time.perf_counter() - started
        _check_length("recognizer", recognitions, routed)
        timing.routes = [r.route for r in routed]
        return [self.finish(r, rec) for r, rec in zip(routed, recognitions)]

    def expected_language(self, language: str | None, robust: bool) -> str | None:
        """The language a segment's text must be in: the request's, else the path's only language (an
        English-only model), else None (any)."""
        if language:
            return language
        languages = self.recognizer.languages(robust)
        return next(iter(languages)) if languages is not None and len(languages) == 1 else None

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
