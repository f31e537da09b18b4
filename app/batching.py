"""Cross-request micro-batching: a bounded, fair queue of segments and the one inference worker.

Shape of the loop (after Ray Serve's batching.py and TEI's queue): wait for the first segment, then keep
the batch open for at most `max_wait` from that first arrival, or until it is full by items or by audio
seconds. Segments are taken round-robin across requests, so a short clip queued behind a long file rides
in the very next batch. Every future is resolved exactly once on every path: result, model failure,
cancellation by its request, or shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app.errors import InferenceFailed, NotReady, Overloaded
from app.metrics import Metrics
from app.pipeline import BatchTiming, Pipeline, SegmentJob, SegmentResult

log = logging.getLogger("app.batching")
T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_items: int = 16
    max_audio_seconds: float = 240.0
    max_wait_seconds: float = 0.025
    max_queue_audio_seconds: float = 1800.0
    max_queue_segments: int = 1024


@dataclass
class _Pending:
    job: SegmentJob
    future: asyncio.Future
    request_id: str
    enqueued_at: float


class Batcher:
    """Owns the queue and the inference worker; lives for the app's lifespan."""

    def __init__(self, pipeline: Pipeline, limits: BatchLimits, metrics: Metrics) -> None:
        self.pipeline = pipeline
        self.limits = limits
        self.metrics = metrics
        self._lanes: collections.OrderedDict[str, collections.deque[_Pending]] = collections.OrderedDict()
        self._queued_audio = 0.0
        self._queued_segments = 0
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running_batch = False
        self._admitting = True
        self._throughput = _Throughput()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run_forever(), name="batcher")

    def close(self) -> None:
        """Stop admitting new work; what is queued still runs."""
        self._admitting = False

    async def drain(self, timeout: float) -> bool:
        """Wait until every accepted segment is answered; False if `timeout` passed first."""
        self.close()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self) -> None:
        """Fail whatever is still queued (after a drain that timed out) and stop the worker."""
        self.close()
        for lane in self._lanes.values():
            for pending in lane:
                _resolve_error(pending, NotReady("the service shut down before this request ran"))
        self._lanes.clear()
        self._account(-self._queued_audio, -self._queued_segments)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_on_worker(self, fn: Callable[..., T], *args: object) -> T:
        """Run a model call outside batching (router-only requests, warm-up) on the inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    # --- admission -----------------------------------------------------------------------------------
    @property
    def queued_audio_seconds(self) -> float:
        return self._queued_audio

    def retry_after_seconds(self) -> int:
        """Seconds until the queue has likely drained, from measured audio-seconds-per-second."""
        return max(1, min(600, math.ceil(self._queued_audio / self._throughput.rate())))

    def submit(self, request_id: str, jobs: Sequence[SegmentJob]) -> list[asyncio.Future]:
        """Queue a request's segments at once, or refuse it whole (429 / 503): never half-admitted."""
        if not self._admitting:
            raise NotReady("the service is draining for shutdown; retry on another replica")
        audio = sum(job.seconds for job in jobs)
        queue_empty = self._queued_segments == 0
        over_audio = self._queued_audio + audio > self.limits.max_queue_audio_seconds
        over_items = self._queued_segments + len(jobs) > self.limits.max_queue_segments
        if not queue_empty and (over_audio or over_items):
            self.metrics.rejected.labels(reason="overloaded").inc()
            retry = self.retry_after_seconds()
            raise Overloaded(f"server busy: {self._queued_audio:.0f} s of audio queued; retry in {retry} s",
                             headers={"Retry-After": str(retry)})
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        lane = self._lanes.setdefault(request_id, collections.deque())
        futures = []
        for job in jobs:
            future = loop.create_future()
            lane.append(_Pending(job, future, request_id, now))
            futures.append(future)
        self._account(audio, len(jobs))
        self._idle.clear()
        self._changed.set()
        return futures

    def cancel(self, request_id: str) -> int:
        """Drop a request's queued segments (client gone or deadline passed); returns how many."""
        lane = self._lanes.pop(request_id, None)
        if not lane:
            return 0
        for pending in lane:
            pending.future.cancel()
        self._account(-sum(p.job.seconds for p in lane), -len(lane))
        self.metrics.cancelled_segments.inc(len(lane))
        self._update_idle()
        return len(lane)

    # --- the worker ----------------------------------------------------------------------------------
    async def _run_forever(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take_batch()
            if not batch:
                continue
            self._running_batch = True
            try:
                await self._run_batch(batch)
            finally:
                self._running_batch = False
                self._update_idle()

    async def _wait_for_batch(self) -> None:
        while self._queued_segments == 0:
            self._changed.clear()
            await self._changed.wait()
        first = min(lane[0].enqueued_at for lane in self._lanes.values())
        deadline = first + self.limits.max_wait_seconds
        while not self._batch_full():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _batch_full(self) -> bool:
        return (self._queued_segments >= self.limits.max_items
                or self._queued_audio >= self.limits.max_audio_seconds)

    def _take_batch(self) -> list[_Pending]:
        """Round-robin over requests: one segment from each in turn, until a limit is reached."""
        batch: list[_Pending] = []
        audio = 0.0
        while self._lanes and len(batch) < self.limits.max_items:
            request_id, lane = next(iter(self._lanes.items()))
            seconds = lane[0].job.seconds
            if batch and audio + seconds > self.limits.max_audio_seconds:
                break
            batch.append(lane.popleft())
            audio += seconds
            if lane:
                self._lanes.move_to_end(request_id)
            else:
                del self._lanes[request_id]
        self._account(-audio, -len(batch))
        return batch

    async def _run_batch(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        for pending in batch:
            self.metrics.queue_wait.observe(now - pending.enqueued_at)
        live = [p for p in batch if not p.future.done()]
        if not live:
            return
        jobs = [p.job for p in live]
        audio = sum(job.seconds for job in jobs)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results, timing = await loop.run_in_executor(self._executor, run_with_oom_split,
                                                         self.pipeline, jobs)
        except asyncio.CancelledError:  # stop() during a batch: still answer every request in it
            for pending in live:
                _resolve_error(pending, NotReady("the service shut down while this request ran"))
            raise
        except Exception as exc:  # the model failed: fail this batch, keep the worker
            log.exception("inference failed for a batch of %d segments", len(live))
            self.metrics.errors.labels(reason="inference_failed").inc()
            for pending in live:
                _resolve_error(pending, InferenceFailed(f"inference failed: {type(exc).__name__}"))
            return
        elapsed = time.perf_counter() - started
        self._throughput.add(audio, elapsed)
        self._record_batch(live, timing, elapsed, audio)
        for pending, result in zip(live, results):
            if not pending.future.done():
                pending.future.set_result(result)

    def _record_batch(self, live: list[_Pending], timing: BatchTiming, elapsed: float, audio: float) -> None:
        m = self.metrics
        m.batch_size.observe(len(live))
        m.batch_audio.observe(audio)
        m.inference.observe(elapsed)
        m.router_time.observe(timing.router_seconds)
        mix = set(timing.routes)
        m.batches.labels(mix=mix.pop() if len(mix) == 1 else "mixed").inc()
        for pending, route in zip(live, timing.routes):
            share = pending.job.seconds / audio if audio > 0 else 1 / len(live)
            m.segment_inference.labels(route=route).observe(timing.recognizer_seconds * share)

    def _account(self, audio: float, segments: int) -> None:
        self._queued_audio = max(0.0, self._queued_audio + audio)
        self._queued_segments += segments
        self.metrics.queue_audio.set(self._queued_audio)
        self.metrics.queue_segments.set(self._queued_segments)

    def _update_idle(self) -> None:
        if self._queued_segments == 0 and not self._running_batch:
            self._idle.set()


def _resolve_error(pending: _Pending, error: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)


def _is_oom(exc: BaseException) -> bool:
    import torch  # imported here: the batcher itself needs no torch

    return isinstance(exc, torch.OutOfMemoryError)


def run_with_oom_split(pipeline: Pipeline, jobs: list[SegmentJob]) -> tuple[list[SegmentResult], BatchTiming]:
    """Run a batch; on CUDA out-of-memory, retry it split in halves (down to single segments)."""
    timing = BatchTiming()
    try:
        return pipeline.run_batch(jobs, timing), timing
    except Exception as exc:
        if not _is_oom(exc) or len(jobs) == 1:
            raise
        log.warning("out of memory on a batch of %d segments; retrying in halves", len(jobs))
        _empty_cuda_cache()
    half = len(jobs) // 2
    left, left_timing = run_with_oom_split(pipeline, jobs[:half])
    right, right_timing = run_with_oom_split(pipeline, jobs[half:])
    merged = BatchTiming(left_timing.router_seconds + right_timing.router_seconds,
                         left_timing.recognizer_seconds + right_timing.recognizer_seconds,
                         left_timing.routes + right_timing.routes)
    return left + right, merged


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Throughput:
    """Exponentially weighted audio seconds processed per second of inference time."""

    def __init__(self, alpha: float = 0.2, initial: float = 1.0) -> None:
        self.alpha = alpha
        self._rate = initial

    def add(self, audio_seconds: float, elapsed: float) -> None:
        if elapsed > 0 and audio_seconds > 0:
            self._rate = (1 - self.alpha) * self._rate + self.alpha * (audio_seconds / elapsed)

    def rate(self) -> float:
        return max(self._rate, 1e-3)

