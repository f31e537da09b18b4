"""Transcribing every manifest item through both recognition paths, with the router scoring it once.

Two runners give the same `ItemTranscripts`:
- `InProcessRunner` drives a loaded `Pipeline` directly, the way the service does: decode to 16 kHz mono,
  cut at pauses into ≤ 30 s segments, skip segments the speech gate finds no speech in, score a batch of
  segments with the router in one call, then decode each segment on both paths in one mixed-route
  recognizer batch, and reassemble each path's text with the service's own `assemble` (the pipeline's
  guards apply to both paths).
- `HttpRunner` (app/evaluation/http_runner.py) asks a running service, twice per item.

A path that cannot transcribe an item's language (the demo's English-only base model and Chinese audio)
gives `None` for that path: the service would route such audio to the other path whatever the threshold.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from app.audio.decoding import decode_audio
from app.audio.segmenter import split_for_recognition
from app.audio.speech_gate import SpeechGateConfig, gate
from app.engine.pipeline import Pipeline, RouteNotAvailable, SegmentJob, SegmentResult
from app.engine.transcript import assemble
from app.errors import ServiceError
from app.evaluation.manifest import ManifestItem

ROUTES = ("base", "robust")


@dataclass(frozen=True)
class PathTranscript:
    text: str
    language: str | None  # ISO code the path answered in (detected when the item had none)


@dataclass(frozen=True)
class ItemTranscripts:
    item: ManifestItem
    duration: float  # seconds of audio
    router_score: float | None  # the file's P(degraded): its highest segment score (None: all silence)
    base: PathTranscript | None  # None: this path cannot transcribe the item's language
    robust: PathTranscript | None


class EvaluationError(RuntimeError):
    """An item or the deployment cannot be evaluated; the message names the item."""


class Runner(Protocol):
    def transcribe(self, items: Sequence[ManifestItem]) -> list[ItemTranscripts]:
        """Same length and order as `items`."""
        ...


def where(item: ManifestItem) -> str:
    return f"{item.path} (manifest line {item.line})"


def progress_bar(total: int, description: str, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="clip", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


@dataclass(frozen=True)
class InProcessConfig:
    batch_size: int = 8  # segments per router call; the recognizer batch holds up to 2× this (both paths)
    max_segment_seconds: float = 30.0
    max_audio_seconds: float = 1200.0
    progress: bool = True
    speech_gate: SpeechGateConfig = field(default_factory=SpeechGateConfig)


@dataclass(frozen=True)
class _Prepared:
    item: ManifestItem
    duration: float
    windows: list[tuple[float, float]]  # segment bounds in seconds
    segments: list[np.ndarray]  # [samples] float32 per window
    voiced: list[int]  # windows the speech gate passed (the only ones the model sees)
    routes: tuple[str, ...]  # the paths that can transcribe this item's language


_SegmentOutputs = dict[str, SegmentResult]  # route -> result, for one segment


class InProcessRunner:
    def __init__(self, pipeline: Pipeline, config: InProcessConfig = InProcessConfig()) -> None:
        if config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if pipeline.scorer is None:
            raise EvaluationError("evaluation needs the router: this pipeline has none")
        for route in ROUTES:
            try:
                pipeline.check_route(route)  # type: ignore[arg-type]
            except RouteNotAvailable as exc:
                raise EvaluationError(f"evaluation needs both paths ({exc}); run with "
                                      "MEGA_ASR_ROUTING=router") from None
        self.pipeline = pipeline
        self.config = config
        # The same recognizer without the router: each segment is scored once, by `pipeline.score`,
        # then decoded on both paths with forced routes.
        self._forced = Pipeline(pipeline.recognizer, None, routing="always_base", guards=pipeline.guards)

    def transcribe(self, items: Sequence[ManifestItem]) -> list[ItemTranscripts]:
        out: list[ItemTranscripts] = []
        with progress_bar(len(items), "evaluating", self.config.progress) as bar:
            for group in self._groups(items):
                out += self._finish(group)
                bar.update(len(group))
        return out

    def _groups(self, items: Sequence[ManifestItem]) -> Iterator[list[_Prepared]]:
        """Decoded items, grouped until they fill a batch (bounds memory to about one batch of audio)."""
        group: list[_Prepared] = []
        for item in items:
            group.append(self._prepare(item))
            if sum(len(p.voiced) for p in group) >= self.config.batch_size:
                yield group
                group = []
        if group:
            yield group

    def _prepare(self, item: ManifestItem) -> _Prepared:
        try:
            audio = decode_audio(item.path.read_bytes(), filename=item.path.name,
                                 max_seconds=self.config.max_audio_seconds)
        except (ServiceError, OSError) as exc:
            raise EvaluationError(f"{where(item)}: {exc}") from None
        pieces = split_for_recognition(audio.samples, max_segment_seconds=self.config.max_segment_seconds)
        routes = tuple(r for r in ROUTES if self.pipeline.supports(r == "robust", item.language))
        if not routes:
            raise EvaluationError(f"{where(item)}: no recognition path transcribes language {item.language!r}")
        return _Prepared(item=item, duration=audio.duration, windows=[(p.start, p.end) for p in pieces],
                         segments=[p.samples for p in pieces],
                         voiced=[i for i, outcome in enumerate(gate([p.samples for p in pieces],
                                                                    self.config.speech_gate))
                                 if outcome == "speech"], routes=routes)

    def _finish(self, group: list[_Prepared]) -> list[ItemTranscripts]:
        keys = [(i, j) for i, prepared in enumerate(group) for j in prepared.voiced]
        outputs: dict[tuple[int, int], _SegmentOutputs] = {}
        size = self.config.batch_size
        for start in range(0, len(keys), size):
            chunk = keys[start:start + size]
            outputs.update(zip(chunk, self._run_batch([(group[i], j) for i, j in chunk])))
        return [self._assemble(prepared, i, outputs) for i, prepared in enumerate(group)]

    def _run_batch(self, segments: list[tuple[_Prepared, int]]) -> list[_SegmentOutputs]:
        audios = [prepared.segments[j] for prepared, j in segments]
        scores = self.pipeline.score(audios)  # one router call for the batch
        jobs: list[SegmentJob] = []
        slots: list[tuple[int, str]] = []
        for k, ((prepared, _), audio) in enumerate(zip(segments, audios)):
            for route in prepared.routes:
                jobs.append(SegmentJob(audio=audio, route=route,  # type: ignore[arg-type]
                                       language=prepared.item.language))
                slots.append((k, route))
        results = self._forced.run_batch(jobs)  # one mixed-route recognizer batch
        outputs: list[_SegmentOutputs] = [{} for _ in segments]
        for (k, route), result in zip(slots, results):
            outputs[k][route] = replace(result, router_score=scores[k])
        return outputs

    def _assemble(self, prepared: _Prepared, index: int,
                  outputs: dict[tuple[int, int], _SegmentOutputs]) -> ItemTranscripts:
        texts: dict[str, PathTranscript] = {}
        score: float | None = None
        for route in prepared.routes:
            results = [outputs[(index, j)][route] if (index, j) in outputs else None
                       for j in range(len(prepared.windows))]
            transcript = assemble(prepared.windows, results, prepared.duration, prepared.item.language)
            texts[route] = PathTranscript(text=transcript.text, language=transcript.language)
            score = transcript.router_score
        return ItemTranscripts(item=prepared.item, duration=prepared.duration, router_score=score,
                               base=texts.get("base"), robust=texts.get("robust"))
