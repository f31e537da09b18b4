"""The job runner: in every replica, claims jobs from the store and transcribes them on the shared engine.

A claimed job's stored audio is decoded window by window (app/audio: the same decoder, segmenter and gate
groups as the synchronous path), its speech segments go to the engine's job lane (at most
`engine_window` of this replica's job segments at a time, all jobs together), and each finished segment is
written to the store as it ends. A heartbeat renews the lease and notices a cancel, a delete or a take-over
by another replica. A job resumed after a crash restarts at the gate group of its first missing segment and
skips what is stored, so its transcript equals an uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.audio.stream import AudioStream
from app.audio.windowed import GATE_GROUP, GatedSegment, gated_segments, skip_samples
from app.engine.pipeline import SegmentJob
from app.engine.transcription import Transcriber, TranscriptionOptions
from app.errors import NotReady, ServiceError
from app.jobs import leases
from app.jobs.chunks import ChunkFile
from app.jobs.codec import encode_result, from_plain
from app.jobs.store import CHUNK_BYTES, JobRecord, JobStore, LeaseLost, OutboxMessage, StoredSegment
from app.jobs.webhooks import event_body, new_message_id
from app.metrics import Metrics

log = logging.getLogger("app.jobs.runner")
RATE = 16_000


@dataclass(frozen=True)
class RunnerConfig:
    worker: str  # this replica's name in leases
    lease_seconds: float
    heartbeat_seconds: float
    poll_seconds: float
    concurrency: int
    engine_window: int
    max_audio_seconds: float
    max_segment_seconds: float
    keep_audio: bool
    retention_seconds: float


def webhook_for(job: JobRecord, status: str) -> OutboxMessage | None:
    if not job.webhook_url:
        return None
    return OutboxMessage(new_message_id(), job.id, job.webhook_url, event_body(job.id, status, job.metadata))


class JobRunner:
    def __init__(self, store: JobStore, transcriber: Transcriber, config: RunnerConfig, metrics: Metrics,
                 on_finished: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.transcriber = transcriber
        self.config = config
        self.metrics = metrics
        self.on_finished = on_finished  # a job ended here: its webhook is due
        self.wake = asyncio.Event()  # a job was submitted here: look now rather than at the next poll
        self._window = asyncio.Semaphore(config.engine_window)
        self._tasks: dict[str, asyncio.Task] = {}
        self._stopping = threading.Event()
        self._housekept = 0.0

    # --- the claim loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                while len(self._tasks) < self.config.concurrency and not self._stopping.is_set():
                    job = await leases.claim(self.store, self.config.worker, self.config.lease_seconds)
                    if job is None:
                        break
                    self._start(job)
                await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is unreachable for a moment: try again at the next poll
                log.exception("job claim round failed")
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config.poll_seconds)

    def _start(self, job: JobRecord) -> None:
        log.info("job %s: claimed (attempt %d)", job.id, job.attempts)
        task = asyncio.get_running_loop().create_task(self._run_job(job), name=f"job {job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: (self._tasks.pop(job.id, None), self.wake.set()))

    def stop_local(self, job_id: str) -> None:
        """The job was cancelled or deleted through this replica: stop it now (its engine segments leave at
        the next step) rather than at the next heartbeat."""
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Shutting down: stop every job here, keep what they stored, and give their leases up so another
        replica resumes them at once."""
        self._stopping.set()
        running = dict(self._tasks)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        for job_id in running:
            with contextlib.suppress(Exception):
                await leases.release(self.store, job_id, self.config.worker)

    async def _housekeeping(self) -> None:
        now = time.time()
        if now - self._housekept < max(self.config.poll_seconds, 5.0):
            return
        self._housekept = now
        counts = await self.store.counts()
        for status in ("queued", "in_progress", "completed", "failed", "cancelled"):
            self.metrics.jobs.labels(status=status).set(counts.get(status, 0))
        self.metrics.job_backlog.set(await self.store.backlog_seconds())
        await self.store.purge(finished_before=now - self.config.retention_seconds, uploading_before=now - 86400)

    # --- one job -------------------------------------------------------------------------------------
    async def _run_job(self, job: JobRecord) -> None:
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job.id, asyncio.current_task()))
        lane = f"job:{job.id}"
        try:
            duration = await self._transcribe(job, lane)
            await leases.complete(self.store, job.id, self.config.worker, duration, webhook_for(job, "completed"),
                                  self.config.keep_audio)
            self._finished(job, "completed")
        except LeaseLost:
            log.info("job %s: no longer ours (cancelled, deleted or taken over)", job.id)
        except NotReady:  # the engine is shutting down: another replica resumes the job
            with contextlib.suppress(Exception):
                await leases.release(self.store, job.id, self.config.worker)
        except ServiceError as error:  # the audio is bad, too long, or the model failed on it
            log.warning("job %s failed: %s", job.id, error.message)
            error_body = {"message": error.message, "type": error.type, "param": error.param, "code": error.code}
            with contextlib.suppress(LeaseLost):
                await leases.fail(self.store, job.id, self.config.worker, error_body, webhook_for(job, "failed"),
                                  self.config.keep_audio)
                self._finished(job, "failed")
        finally:
            beat.cancel()
            self.transcriber.batcher.cancel(lane)

    def _finished(self, job: JobRecord, status: str) -> None:
        self.metrics.job_duration.labels(status=status).observe(max(0.0, time.time() - job.created_at))
        self.on_finished()

    async def _heartbeat(self, job_id: str, job_task: asyncio.Task | None) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                await leases.heartbeat(self.store, job_id, self.config.worker, self.config.lease_seconds)
            except LeaseLost:
                if job_task is not None:
                    job_task.cancel()  # cancelled elsewhere or taken over: stop decoding it here
                return
            except Exception:
                log.exception("job %s: heartbeat failed", job_id)

    async def _transcribe(self, job: JobRecord, lane: str) -> float:
        """Transcribe what is not stored yet; returns the recording's duration (seconds)."""
        stored = {segment.seq: segment for segment in await self.store.segments(job.id)}
        first, start_sample = resume_point(stored)
        end_sample = max((segment.end_sample for segment in stored.values()), default=0)
        groups = self._groups(job, start_sample, first)
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()
        try:
            while (group := await loop.run_in_executor(self.transcriber.decode_pool, next, groups, None)):
                self.transcriber.record_gate(group)
                for item in group:
                    end_sample = max(end_sample, item.end_sample)
                    if item.index not in stored and (task := await self._segment(job, lane, item)):
                        pending.add(task)
                    _raise_first_failure(pending)
            await _all(pending)
        finally:
            for task in pending:
                task.cancel()
        return end_sample / RATE

    async def _segment(self, job: JobRecord, lane: str, item: GatedSegment) -> asyncio.Task | None:
        """Store a segment without speech at once; queue a speech segment (waiting for room in the window)."""
        if item.outcome != "speech":
            await self._store(job, item, None)
            return None
        options = from_plain(TranscriptionOptions, job.options["transcription"])
        (segment_job,) = await self.transcriber.segment_jobs([item.segment.samples], options)
        await self._window.acquire()
        try:
            (future,) = self.transcriber.batcher.submit(lane, [segment_job], lane="job")
        except BaseException:
            self._window.release()
            raise
        return asyncio.get_running_loop().create_task(self._finish_segment(job, item, segment_job, future))

    async def _finish_segment(self, job: JobRecord, item: GatedSegment, segment_job: SegmentJob,
                              future: asyncio.Future) -> None:
        try:
            result = await future
        finally:
            self._window.release()
        self.transcriber.record_result(segment_job, result)
        await self._store(job, item, encode_result(result))

    async def _store(self, job: JobRecord, item: GatedSegment, result: str | None) -> None:
        seconds = (item.end_sample - item.start_sample) / RATE
        await leases.put_segment(self.store, job.id, self.config.worker, item.index,
                                 (item.start_sample, item.end_sample), item.outcome, result, seconds)

    def _groups(self, job: JobRecord, start_sample: int, first: int) -> Iterator[list[GatedSegment]]:
        """The job's gated segments from `start_sample` on; runs on the decode pool, reading the stored audio
        chunk by chunk through the event loop."""
        loop = asyncio.get_running_loop()
        stopping = self._stopping

        def fetch(seq: int) -> bytes:
            if stopping.is_set() or loop.is_closed():
                raise LeaseLost(job.id)
            chunk = self.store.audio_chunk(job.id, seq)
            try:
                future = asyncio.run_coroutine_threadsafe(chunk, loop)
            except RuntimeError:  # the loop closed meanwhile (shutting down)
                chunk.close()
                raise LeaseLost(job.id) from None
            while True:  # wait in short steps: a shutdown must not leave this thread waiting forever
                try:
                    return future.result(timeout=0.5)
                except TimeoutError:
                    if stopping.is_set() or loop.is_closed():
                        future.cancel()
                        raise LeaseLost(job.id) from None

        def generate() -> Iterator[list[GatedSegment]]:
            file = ChunkFile(job.audio_bytes, CHUNK_BYTES, fetch)
            try:
                stream = AudioStream(file, max_seconds=self.config.max_audio_seconds)
                yield from gated_segments(skip_samples(stream.blocks(), start_sample),
                                          max_segment_seconds=self.config.max_segment_seconds,
                                          gate_config=self.transcriber.speech_gate, start_sample=start_sample,
                                          first_index=first)
            except ServiceError:
                if file.failure is not None:  # the audio was bad because it could not be read: say why
                    raise file.failure from None
                raise
            if file.failure is not None:
                raise file.failure

        return generate()


def resume_point(stored: dict[int, StoredSegment]) -> tuple[int, int]:
    """(first segment index, its start sample) to decode from: the gate group of the first missing segment."""
    contiguous = 0
    while contiguous in stored:
        contiguous += 1
    first = contiguous - contiguous % GATE_GROUP
    return first, (stored[first - 1].end_sample if first else 0)


def _raise_first_failure(pending: set[asyncio.Task]) -> None:
    for task in [t for t in pending if t.done()]:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


async def _all(pending: set[asyncio.Task]) -> None:
    while pending:
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        _raise_first_failure(pending)
        if not done:
            return
