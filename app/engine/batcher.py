"""Cross-request batching at the level of decode steps: a bounded fair queue of segments and the running
rows of one decode session, driven by one inference worker.

Each loop is one iteration on the worker (app.engine.iteration): cancelled rows leave, queued segments join the
running rows (routed by the router in one call, prefilled in groups of similar length), and every running
row decodes one token. A row leaves the moment it ends and its result is delivered at once; its text is
delivered as it is decoded (streaming). When nothing runs, the first arrival waits at most `max_wait` for
company (after Ray Serve's batching.py); while rows run, new segments join at the next step.

`engine="static"` keeps the previous behaviour for comparison: a batch joins only when no row runs, and
runs until its last row ends. Every future is resolved exactly once on every path: result, model failure,
cancellation by its request, or shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from app.engine.fair_queue import FairQueue, Throughput
from app.engine.inference_thread import cpu_threads, inference_executor
from app.engine.iteration import Engine, Iteration, record_iteration
from app.engine.job_lane import JobLane, JobLaneLimits
from app.engine.pending import Lane, Pending
from app.engine.pipeline import Pipeline, SegmentJob, SegmentResult
from app.engine.prefill_ahead import prefill_ahead_for
from app.engine.shortest_first import ShortestFirst, WorkEstimate, overtaken, take_next
from app.errors import InferenceFailed, NotReady, Overloaded
from app.metrics import Metrics
from models.recognition import DecodeSession, open_session

log = logging.getLogger("app.engine.batcher")
T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_items: int = 16  # rows decoding together (continuous) / segments per batch (static)
    max_audio_seconds: float = 240.0  # audio joining per iteration (prefill work between two steps) / per batch
    max_wait_seconds: float = 0.025  # when nothing runs: how long the first arrival waits for company
    max_queue_audio_seconds: float = 1800.0
    max_queue_segments: int = 1024
    max_kv_cache_bytes: int = 0  # bound on the running rows' cache memory; 0 = only max_items
    engine: Literal["continuous", "static"] = "continuous"
    job_lane: JobLaneLimits = field(default_factory=JobLaneLimits)  # background jobs (app/engine/job_lane.py)
    shortest_first: ShortestFirst = field(default_factory=ShortestFirst)  # continuous: app/engine/shortest_first.py
    prefill_ahead: int = 4  # continuous, CPU: segments whose encoder may run ahead (app/engine/prefill_ahead.py)


class Batcher:
    """Owns the queue, the running rows and the inference worker; lives for the app's lifespan."""

    def __init__(self, pipeline: Pipeline, limits: BatchLimits, metrics: Metrics,
                 session: DecodeSession | None = None, estimate: WorkEstimate | None = None,
                 executor: concurrent.futures.ThreadPoolExecutor | None = None, threads: int | None = None,
                 ahead_on: bool | None = None) -> None:
        """`threads`: the inference thread's CPU threads (default: cpu_threads()); `ahead_on`: whether encoders
        may run ahead (default: on a CPU with 2+ threads, for a session that prepares ahead)."""
        self.pipeline = pipeline
        self.limits = limits
        self.metrics = metrics
        self._session = session if session is not None else open_session(pipeline.recognizer, limits.max_items)
        threads = threads or cpu_threads()
        on = (pipeline.device == "cpu" and threads >= 2) if ahead_on is None else ahead_on
        self._ahead = prefill_ahead_for(self._session, limits.prefill_ahead if on and limits.engine == "continuous"
                                        else 0)
        self._engine = Engine(pipeline, self._session, group_by_length=limits.engine == "continuous",
                              ahead=self._ahead, threads=threads)
        self.row_limit = self._rows_allowed()
        self._queue: FairQueue[int] = FairQueue(on_change=self._queue_changed)
        self._jobs = JobLane(limits.job_lane, FairQueue(on_change=self._queue_changed))
        self._live: dict[int, Pending] = {}  # every accepted, unanswered segment
        self._running: set[int] = set()  # keys of rows in the session
        self._to_cancel: set[int] = set()
        self._keys = itertools.count()
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.busy = False  # an iteration is on the worker
        self._prefilled_last = False  # the last iteration prefilled without stepping
        self._admitting = True
        self._throughput = Throughput()
        self._estimate = estimate or WorkEstimate()  # measured costs: the order of work (app/engine/shortest_first.py)
        # One thread runs every model call (`executor`: the one the models were loaded on; app/main.py).
        self._executor = executor or inference_executor(cpu_threads())
        self._worker: asyncio.Task | None = None

    def _rows_allowed(self) -> int:
        row_bytes = self._session.row_bytes()
        if self.limits.max_kv_cache_bytes and row_bytes:
            return max(1, min(self.limits.max_items, self.limits.max_kv_cache_bytes // row_bytes))
        return self.limits.max_items

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run_forever(), name="batcher")

    def close(self) -> None:
        """Stop admitting new work; what is accepted still runs."""
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
        """Fail whatever is still accepted (after a drain that timed out) and stop the worker."""
        self.close()
        self._queue.drain()
        self._jobs.queue.drain()
        for pending in list(self._live.values()):
            pending.fail(NotReady("the service shut down before this request finished"))
        self._live.clear()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._ahead is not None:
            self._ahead.close()

    async def run_on_worker(self, fn: Callable[..., T], *args: object) -> T:
        """Run a model call outside the running rows (router-only requests, warm-up) on the inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    # --- admission -----------------------------------------------------------------------------------
    @property
    def queued_audio_seconds(self) -> float:
        return self._queue.audio

    @property
    def running(self) -> int:
        return len(self._running)

    def retry_after_seconds(self) -> int:
        """Seconds until the queue has likely drained, from measured audio-seconds-per-second."""
        return max(1, min(600, math.ceil(self._queue.audio / self._throughput.rate())))

    def submit(self, request_id: str, jobs: Sequence[SegmentJob],
               listener: Callable[[int, str], None] | None = None, *, lane: Lane = "sync") -> list[asyncio.Future]:
        """Queue a request's segments at once, or refuse it whole (429 / 503): never half-admitted.
        `listener(index, delta)` receives each segment's text as it is decoded. lane="job": the background
        jobs' lane (app/engine/job_lane.py), not subject to the synchronous admission limit."""
        if not self._admitting:
            raise NotReady("the service is draining for shutdown; retry on another replica")
        if lane == "sync":
            self._admit_or_refuse(jobs)
        loop, now = asyncio.get_running_loop(), time.monotonic()
        futures, entries = [], []
        for index, job in enumerate(jobs):
            key = next(self._keys)
            on_delta = functools.partial(listener, index) if listener is not None else None
            pending = Pending(key, job, loop.create_future(), request_id, now, on_delta, lane=lane)
            self._live[key] = pending
            futures.append(pending.future)
            entries.append((key, job.seconds))
        (self._queue if lane == "sync" else self._jobs.queue).push(request_id, entries, now)
        self._idle.clear()
        self._changed.set()
        return futures

    def _admit_or_refuse(self, jobs: Sequence[SegmentJob]) -> None:
        audio = sum(job.seconds for job in jobs)
        over_audio = self._queue.audio + audio > self.limits.max_queue_audio_seconds
        over_items = self._queue.segments + len(jobs) > self.limits.max_queue_segments
        if self._queue.segments and (over_audio or over_items):
            self.metrics.rejected.labels(reason="overloaded").inc()
            retry = self.retry_after_seconds()
            raise Overloaded(f"server busy: {self._queue.audio:.0f} s of audio queued; retry in {retry} s",
                             headers={"Retry-After": str(retry)})

    def cancel(self, request_id: str) -> int:
        """Drop a request's segments (client gone or deadline passed): queued ones at once, running rows
        at the next step. Returns how many were dropped."""
        dropped = self._queue.drop(request_id) + self._jobs.queue.drop(request_id)
        in_flight = [p.key for p in self._live.values() if p.request_id == request_id and p.key not in dropped]
        for key in [*dropped, *in_flight]:
            self._live.pop(key).future.cancel()
        self._to_cancel.update(in_flight)  # running (or joining right now): out at the next step
        if dropped or in_flight:
            self.metrics.cancelled_segments.inc(len(dropped) + len(in_flight))
            self._changed.set()
        self._update_idle()
        return len(dropped) + len(in_flight)

    # --- the worker ----------------------------------------------------------------------------------
    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work()
            cancel, self._to_cancel = sorted(self._to_cancel), set()
            cancel += self._preempt_job_rows()
            admitted = self._admit()
            if not admitted and not self._running and not cancel:
                continue
            # An iteration that prefills delivers before stepping (a new row's first text goes out after its
            # prefill alone), but never twice in a row: the running rows keep stepping under any arrival rate.
            step = not admitted or self._prefilled_last
            self._prefilled_last = not step
            self.busy = True
            started = time.perf_counter()
            try:
                it = await loop.run_in_executor(self._executor, self._engine.iterate, cancel,
                                                [(p.key, p.routed or p.job) for p in admitted], step)
            except asyncio.CancelledError:  # stop() during an iteration: stop() answers every request
                raise
            except Exception as exc:  # the engine itself failed: fail what it held, keep the worker
                log.exception("inference iteration failed")
                it = Iteration(failed=dict.fromkeys([*self._running, *(p.key for p in admitted)], exc))
                self._engine.reset()
            finally:
                self.busy = False
            self._deliver(it, time.perf_counter() - started)
            self._update_idle()

    async def _wait_for_work(self) -> None:
        while not self._queue.segments and not self._jobs.queue.segments and not self._running \
                and not self._to_cancel:
            self._changed.clear()
            await self._changed.wait()
        if self._running or self._to_cancel:
            return  # rows are decoding: newcomers join at the next step, no waiting
        if not self._queue.segments:  # job segments alone: they join once synchronous work has been quiet
            await self._wait_quiet()
            return
        if self._ahead is not None:
            # A CPU session that prefills ahead encodes one window at a time, and later arrivals are encoded
            # ahead while this one decodes: company saves nothing here, the wait would be pure latency.
            return
        deadline = (self._queue.first_enqueued_at() or time.monotonic()) + self.limits.max_wait_seconds
        while (self._queue.segments < self.row_limit and self._queue.audio < self.limits.max_audio_seconds):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _wait_quiet(self) -> None:
        while (remaining := self._jobs.quiet_in(time.monotonic())) > 0 and not self._queue.segments:
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _admit(self) -> list[Pending]:
        if self.limits.engine == "static" and self._running:
            return []  # a static batch runs to its end before the next one starts
        free = self.row_limit - len(self._running)
        now = time.monotonic()
        taken = self._take_sync(free, now)
        if taken is None:
            return []  # the running rows step first: their remaining work is the shortest
        sync_recent = self._jobs.sync_recent(bool(taken) or self._sync_present(), now)
        taken += self._jobs.take(free - len(taken), self.row_limit, sync_recent, self.limits.max_audio_seconds)
        admitted = []
        for key, enqueued_at in taken:
            pending = self._live.get(key)
            if pending is not None:
                self.metrics.queue_wait.observe(now - enqueued_at)
                admitted.append(pending)
        return admitted

    def _take_sync(self, free: int, now: float) -> list[tuple[int, float]] | None:
        """Synchronous segments joining now (None: none, the running rows step first). Continuous: shortest
        work first (app/engine/shortest_first.py); static or with the policy off: round-robin."""
        policy = self.limits.shortest_first
        if self.limits.engine == "static" or not policy.enabled or not self._queue.segments:
            return self._queue.take(free, self.limits.max_audio_seconds)
        if self._ahead is not None and self._running:
            free += self._hand_back_overtaken(now)  # their rows are free again
        running = [(p.job.seconds, p.tokens) for key in self._running if (p := self._live.get(key)) is not None]
        # Read between iterations, when only the batcher touches it (the helper thread only computes).
        ahead = None if self._ahead is None else self._ahead.capacity - self._ahead.in_flight
        return take_next(self._queue, policy, self._estimate, running, free, self.limits.max_audio_seconds, now,
                         ahead)

    def _hand_back_overtaken(self, now: float) -> int:
        """Segments ahead whose encoder has not started and that shorter queued work should go before: back to
        the queue (app/engine/prefill_ahead.py). Returns how many went back."""
        unstarted = [(key, p.job.seconds, p.enqueued_at) for key in self._ahead.unstarted()
                     if (p := self._live.get(key)) is not None]
        keys = overtaken(self._queue, self.limits.shortest_first, self._estimate, unstarted, now)
        handed = self._ahead.hand_back(keys)
        for key in handed:
            routed = self._live[key].routed
            self._requeue(key)
            self._live[key].routed = routed  # its route stands: not scored again when it is taken again
        return len(handed)

    def _sync_present(self) -> bool:
        return bool(self._queue.segments) or len(self._running) > len(self._jobs.running)

    def _preempt_job_rows(self) -> list[int]:
        """Job rows beyond the lane's cap while synchronous work waits or runs: out of the session (the
        returned keys are cancelled there) and back to the head of their job's queue."""
        if self.limits.engine == "static" or not self._queue.segments:
            return []
        evicted = self._jobs.to_preempt(self.row_limit, sync_present=True)
        for key in evicted:
            self._requeue(key)
        return evicted

    def _requeue(self, key: int) -> None:
        self._running.discard(key)
        self._jobs.left([key])
        if (pending := self._live.get(key)) is not None:
            pending.restart()
            queue = self._queue if pending.lane == "sync" else self._jobs.queue
            queue.push_front(pending.request_id, key, pending.job.seconds, pending.enqueued_at)

    # --- delivering ----------------------------------------------------------------------------------
    def _deliver(self, it: Iteration, elapsed: float) -> None:
        now, m = time.monotonic(), self.metrics
        for key, routed in it.routed.items():
            if key in self._live and key not in it.failed:
                self._live[key].routed, self._live[key].joined_at = routed, now
                self._running.add(key)
                if self._live[key].lane == "job":
                    self._jobs.joined(key)
        record_iteration(self.metrics, it, elapsed)
        self._estimate.observe_iteration(it.inline_joined, it.inline_prefill_seconds, it.step_seconds)
        completed_audio = 0.0
        for update in it.updates:
            pending = self._live.get(update.key)
            if pending is None or pending.routed is None:
                continue  # cancelled meanwhile
            route = pending.routed.route
            if update.tokens:
                if pending.tokens == 0:
                    m.time_to_first_token.labels(route=route).observe(now - pending.enqueued_at)
                pending.tokens += update.tokens
                m.generated_tokens.labels(route=route).inc(update.tokens)
            pending.stream(update.delta)
            if update.result is not None and update.key not in it.failed:  # failed: alignment raised
                completed_audio += pending.job.seconds
                self._estimate.observe_finished(pending.job.seconds, pending.tokens)
                self._finish(pending, update.result, now, it.finished.get(update.key))
        for key, exc in it.failed.items():
            if (pending := self._live.pop(key, None)) is not None:
                self._running.discard(key)
                m.errors.labels(reason="inference_failed").inc()
                pending.fail(InferenceFailed(f"inference failed: {type(exc).__name__}"))
        for key in it.requeue:
            self._requeue(key)
        self._running &= set(self._live)
        self._jobs.left([key for key in self._jobs.running if key not in self._running])
        m.running_rows.set(len(self._running))
        self._throughput.add(completed_audio, elapsed)

    def _finish(self, pending: Pending, recognition, now: float, finished: SegmentResult | None = None) -> None:
        """`finished`: the result the engine already completed (guards + word times) for a word request."""
        self._live.pop(pending.key, None)
        self._running.discard(pending.key)
        result = finished if finished is not None else self.pipeline.finish(pending.routed, recognition)
        route = pending.routed.route
        if pending.joined_at is not None:
            self.metrics.segment_inference.labels(route=route).observe(now - pending.joined_at)
        pending.answer(result)

    def _queue_changed(self, audio: float, segments: int) -> None:
        # The autoscaling signal counts both lanes (job audio waits for capacity too).
        lanes = [self._queue, self._jobs.queue]
        self.metrics.queue_audio.set(sum(queue.audio for queue in lanes))
        self.metrics.queue_segments.set(sum(queue.segments for queue in lanes))

    def _update_idle(self) -> None:
        if not self._live and not self.busy:
            self._idle.set()
