"""One request's path through the service: decode, segment, gate, queue, wait, reassemble.

Blocking steps (decoding, resampling, VAD) take one explicit hop to the decode thread pool; model work
happens only on the batcher's inference worker. Segments the speech gate finds no speech in are never
queued: no router score, no recognizer time, empty text with `no_speech`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.audio.decoding import DecodedAudio, decode_audio
from app.audio.segmenter import Segment
from app.audio.speech_gate import GateOutcome, SpeechGateConfig, segment_speech_runs
from app.audio.windowed import GatedSegment, gated_segments
from app.engine.batcher import Batcher
from app.engine.pipeline import Pipeline, RouteRequest, SegmentJob, SegmentResult
from app.engine.transcript import UNSPACED, Transcript, assemble
from app.engine.words import Runs
from app.metrics import Metrics


@dataclass(frozen=True)
class TranscriptionOptions:
    language: str | None = None  # ISO code, already validated
    prompt: str = ""
    route: RouteRequest = "auto"
    threshold: float = 0.5
    words: bool = False  # timestamp_granularities[]=word


@dataclass(frozen=True)
class QualityAssessment:
    router_score: float
    route: str
    threshold: float
    duration: float


class Transcriber:
    def __init__(self, pipeline: Pipeline, batcher: Batcher, decode_pool: concurrent.futures.Executor,
                 metrics: Metrics, *, max_audio_seconds: float, max_segment_seconds: float,
                 speech_gate: SpeechGateConfig | None = None, speech_edges: bool = False) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.batcher = batcher
        self.decode_pool = decode_pool
        self.max_audio_seconds = max_audio_seconds
        self.max_segment_seconds = max_segment_seconds
        self.speech_gate = speech_gate if speech_gate is not None else SpeechGateConfig()
        self.speech_edges = speech_edges  # word requests: compute silero's speech runs for the word times

    async def decode(self, data: bytes, filename: str | None) -> DecodedAudio:
        work = functools.partial(decode_audio, data, filename=filename, max_seconds=self.max_audio_seconds)
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work)

    async def transcribe(self, request_id: str, audio: DecodedAudio, options: TranscriptionOptions,
                         on_text: Callable[[str], None] | None = None) -> Transcript:
        """The request's transcript. `on_text` receives the text as it is decoded, segment after segment in
        order (a later segment's text waits until the earlier ones end); the transcript is final."""
        segments = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self._split_and_gate,
                                                                    audio.samples)
        voiced = [i for i, (_, outcome) in enumerate(segments) if outcome == "speech"]
        jobs = await self.segment_jobs([segments[i][0].samples for i in voiced], options)
        results: list[SegmentResult | None] = [None] * len(segments)
        if jobs:
            ordered = OrderedText(len(jobs), on_text, options.language) if on_text is not None else None
            futures = self.batcher.submit(request_id, jobs, listener=ordered.delta if ordered else None)
            if ordered is not None:
                for index, future in enumerate(futures):
                    future.add_done_callback(functools.partial(ordered.finished, index))
            try:
                done = await asyncio.gather(*futures)
            finally:
                self.batcher.cancel(request_id)  # no-op when all ran; drops the rest if we were cancelled
            for index, job, result in zip(voiced, jobs, done):
                results[index] = result
                self._record(job, result)
        windows = [(segment.start, segment.end) for segment, _ in segments]
        return assemble(windows, results, audio.duration, options.language, words=options.words)

    async def segment_jobs(self, voiced: list[np.ndarray], options: TranscriptionOptions) -> list[SegmentJob]:
        """What the engine runs for a request's (or a job's) voiced segments. Word requests carry silero's
        speech runs, which correct word times when the settings say so; each segment's runs are computed
        alone, so a job (which meets its segments one at a time) gets the same runs as a request."""
        if not (options.words and self.speech_edges and voiced):
            return [segment_job(samples, options) for samples in voiced]
        work = functools.partial(_speech_runs_each, voiced, self.speech_gate)
        runs = await asyncio.get_running_loop().run_in_executor(self.decode_pool, work)
        return [segment_job(samples, options, speech) for samples, speech in zip(voiced, runs)]

    def _split_and_gate(self, samples: np.ndarray) -> list[tuple[Segment, GateOutcome]]:
        """Segments of at most max_segment_seconds and the speech gate's outcome for each (blocking): the
        windowed routine jobs use too (app/audio/windowed.py), so both cut and gate the same way."""
        gated = [item for group in gated_segments([samples], max_segment_seconds=self.max_segment_seconds,
                                                  gate_config=self.speech_gate) for item in group]
        self.record_gate(gated)
        return [(item.segment, item.outcome) for item in gated]

    def record_gate(self, gated: list[GatedSegment]) -> None:
        for item in gated:
            self.metrics.speech_gate_segments.labels(outcome=item.outcome).inc()
            self.metrics.speech_gate_audio_seconds.labels(outcome=item.outcome).inc(item.segment.end
                                                                                    - item.segment.start)

    def record_result(self, job: SegmentJob, result: SegmentResult) -> None:
        """The metrics of one recognized segment (a job's segments count like a request's)."""
        self._record(job, result)

    def _record(self, job: SegmentJob, result: SegmentResult) -> None:
        self.metrics.audio_seconds.labels(route=result.route).inc(job.seconds)
        self.metrics.route_decisions.labels(route=result.route, reason=result.reason).inc()
        if result.router_score is not None:
            self.metrics.router_score.observe(result.router_score)
        for event in result.guards:
            self.metrics.guarded_segments.labels(route=result.route, reason=event.reason,
                                                 action=event.action).inc()

    async def assess(self, audio: DecodedAudio, threshold: float) -> QualityAssessment:
        """The router alone, run on the inference worker like all model work."""
        if self.pipeline.scorer is None:
            raise RuntimeError("this profile has no router")
        scores = await self.batcher.run_on_worker(self.pipeline.score, [audio.samples])
        score = float(scores[0])
        return QualityAssessment(router_score=score, route="robust" if score >= threshold else "base",
                                 threshold=threshold, duration=audio.duration)


def segment_job(samples: np.ndarray, options: TranscriptionOptions, speech: Runs = ()) -> SegmentJob:
    """What the engine runs for one segment of a request or a job with these options."""
    return SegmentJob(audio=samples, route=options.route, threshold=options.threshold, language=options.language,
                      context=options.prompt, words=options.words, speech=speech)


def _speech_runs_each(voiced: list[np.ndarray], config: SpeechGateConfig) -> list[Runs]:
    """silero's speech runs of each segment on its own (blocking: the decode pool)."""
    return [segment_speech_runs([samples], config)[0] for samples in voiced]


class OrderedText:
    """A request's segment deltas delivered in segment order, separated like the final transcript joins
    them (a space, none for languages written without spaces)."""

    def __init__(self, count: int, emit: Callable[[str], None], language: str | None) -> None:
        self._buffers: list[list[str]] = [[] for _ in range(count)]
        self._finished = [False] * count
        self._current = 0
        self._emit = emit
        self._language = language
        self._sent_any = False
        self._segment_started = False

    def delta(self, index: int, text: str) -> None:
        if index == self._current:
            self._send(text)
        elif index > self._current:
            self._buffers[index].append(text)

    def finished(self, index: int, future: asyncio.Future) -> None:
        self._finished[index] = True
        if self._language is None and not future.cancelled() and future.exception() is None:
            self._language = future.result().language
        while self._current < len(self._finished) and self._finished[self._current]:
            self._current += 1
            self._segment_started = False
            if self._current < len(self._buffers):
                for text in self._buffers[self._current]:
                    self._send(text)
                self._buffers[self._current] = []

    def _send(self, text: str) -> None:
        if not text:
            return
        if self._sent_any and not self._segment_started and self._language not in UNSPACED:
            text = " " + text.lstrip()
        self._segment_started = True
        self._sent_any = True
        self._emit(text)
