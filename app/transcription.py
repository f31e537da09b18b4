"""One request's path through the service: decode, segment, queue, wait, reassemble.

Blocking steps (decoding, resampling, VAD) take one explicit hop to the decode thread pool; model work
happens only on the batcher's inference worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from dataclasses import dataclass

from app.audio import DecodedAudio, decode_audio, is_silent
from app.batching import Batcher
from app.metrics import Metrics
from app.pipeline import Pipeline, RouteRequest, SegmentJob, SegmentResult
from app.segmenter import split_for_recognition
from app.transcript import Transcript, assemble


@dataclass(frozen=True)
class TranscriptionOptions:
    language: str | None = None  # ISO code, already validated
    prompt: str = ""
    route: RouteRequest = "auto"
    threshold: float = 0.5


@dataclass(frozen=True)
class QualityAssessment:
    router_score: float
    route: str
    threshold: float
    duration: float


class Transcriber:
    def __init__(self, pipeline: Pipeline, batcher: Batcher, decode_pool: concurrent.futures.Executor,
                 metrics: Metrics, *, max_audio_seconds: float, max_segment_seconds: float) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.batcher = batcher
        self.decode_pool = decode_pool
        self.max_audio_seconds = max_audio_seconds
        self.max_segment_seconds = max_segment_seconds

    async def decode(self, data: bytes, filename: str | None) -> DecodedAudio:
        work = functools.partial(decode_audio, data, filename=filename, max_seconds=self.max_audio_seconds)
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work)

    async def transcribe(self, request_id: str, audio: DecodedAudio, options: TranscriptionOptions) -> Transcript:
        loop = asyncio.get_running_loop()
        split = functools.partial(split_for_recognition, audio.samples,
                                  max_segment_seconds=self.max_segment_seconds)
        segments = await loop.run_in_executor(self.decode_pool, split)
        voiced = [i for i, seg in enumerate(segments) if not is_silent(seg.samples)]
        jobs = [SegmentJob(audio=segments[i].samples, route=options.route, threshold=options.threshold,
                           language=options.language, context=options.prompt) for i in voiced]
        results: list[SegmentResult | None] = [None] * len(segments)
        if jobs:
            futures = self.batcher.submit(request_id, jobs)
            try:
                done = await asyncio.gather(*futures)
            finally:
                self.batcher.cancel(request_id)  # no-op when all ran; drops the rest if we were cancelled
            for index, job, result in zip(voiced, jobs, done):
                results[index] = result
                self._record(job, result)
        windows = [(seg.start, seg.end) for seg in segments]
        return assemble(windows, results, audio.duration, options.language)

    def _record(self, job: SegmentJob, result: SegmentResult) -> None:
        self.metrics.audio_seconds.labels(route=result.route).inc(job.seconds)
        self.metrics.route_decisions.labels(route=result.route, reason=result.reason).inc()
        if result.router_score is not None:
            self.metrics.router_score.observe(result.router_score)

    async def assess(self, audio: DecodedAudio, threshold: float) -> QualityAssessment:
        """The router alone, run on the inference worker like all model work."""
        if self.pipeline.scorer is None:
            raise RuntimeError("this profile has no router")
        scores = await self.batcher.run_on_worker(self.pipeline.score, [audio.samples])
        score = float(scores[0])
        return QualityAssessment(router_score=score, route="robust" if score >= threshold else "base",
                                 threshold=threshold, duration=audio.duration)
