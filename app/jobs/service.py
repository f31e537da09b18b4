"""What the HTTP room asks of jobs: submit (the upload streamed into the store), read, list, cancel, delete,
and the transcript, assembled from the stored segments exactly as the synchronous path assembles a request's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from app.audio.stream import probe_seconds, refuse_obvious_non_audio, too_long
from app.engine.transcript import Transcript, assemble
from app.engine.transcription import TranscriptionOptions
from app.errors import Conflict, InvalidRequest, Overloaded, PayloadTooLarge
from app.jobs import leases
from app.jobs.codec import decode_result, from_plain, to_plain
from app.jobs.runner import RATE, JobRunner, webhook_for
from app.jobs.store import CHUNK_BYTES, JobRecord, JobStore

# A full backlog drains at the replicas' pace, which one replica does not know: clients retry after a minute.
BACKLOG_RETRY_SECONDS = 60


class Upload(Protocol):
    """A multipart upload as the form parser spooled it (starlette's UploadFile)."""

    filename: str | None
    file: object  # the seekable spooled file

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Submission:
    owner: str
    options: TranscriptionOptions  # what the synchronous endpoint would run the same fields with
    response_format: str  # the transcript's format when GET .../transcript names none
    metadata: dict[str, str]
    webhook_url: str | None
    idempotency_key: str | None


class Jobs:
    def __init__(self, store: JobStore, runner: JobRunner | None, *, max_upload_bytes: int,
                 max_audio_seconds: float, keep_audio: bool, max_backlog_seconds: float) -> None:
        self.store = store
        self.runner = runner
        self.max_upload_bytes = max_upload_bytes
        self.max_audio_seconds = max_audio_seconds
        self.keep_audio = keep_audio
        self.max_backlog_seconds = max_backlog_seconds

    async def submit(self, submission: Submission, upload: Upload) -> tuple[JobRecord, bool]:
        """Stream the upload into the store and queue the job. Returns (job, created): an Idempotency-Key
        seen before with the same fields and file returns that job (created False); with others, 409.
        While the backlog is at its bound the submit is refused (429) before the upload goes to the store."""
        await self._refuse_when_full()
        job_id = "job_" + secrets.token_hex(12)
        await self.store.create(job_id, submission.owner, stored_options(submission), submission.metadata,
                                submission.webhook_url, (upload.filename or "")[:255] or None)
        try:
            size, file_hash = await self._stream(job_id, upload)
            seconds = await asyncio.to_thread(probe_seconds, upload.file)
            if seconds is not None and seconds > self.max_audio_seconds:
                raise too_long(seconds, self.max_audio_seconds)
            fingerprint = _fingerprint(submission, file_hash)
            if submission.idempotency_key:
                replay = await self._replay(submission, fingerprint)
                if replay is not None:
                    await self.store.delete(job_id)
                    return replay, False
            await self.store.finish_upload(job_id, size, seconds, submission.idempotency_key, fingerprint)
        except IntegrityError:  # another submit with this key won the race: answer as that one
            await self.store.delete(job_id)
            replay = await self._replay(submission, fingerprint)
            if replay is None:
                raise
            return replay, False
        except BaseException:
            await asyncio.shield(self.store.delete(job_id))
            raise
        if self.runner is not None:
            self.runner.wake.set()
        job = await self.store.get(job_id)
        assert job is not None
        return job, True

    async def _refuse_when_full(self) -> None:
        backlog = await self.store.backlog_seconds()
        if backlog >= self.max_backlog_seconds:
            raise Overloaded(f"the job backlog is full: {backlog / 3600:.1f} h of audio waiting "
                             f"(MEGA_ASR_JOB_MAX_BACKLOG_HOURS); retry in {BACKLOG_RETRY_SECONDS} s",
                             headers={"Retry-After": str(BACKLOG_RETRY_SECONDS)})

    async def _stream(self, job_id: str, upload: Upload) -> tuple[int, str]:
        digest, size, seq = hashlib.sha256(), 0, 0
        while chunk := await upload.read(CHUNK_BYTES):
            if seq == 0:
                refuse_obvious_non_audio(chunk[:512])
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise PayloadTooLarge(f"upload exceeds the job limit of {self.max_upload_bytes} bytes", param="file")
            digest.update(chunk)
            await self.store.append_audio(job_id, seq, chunk)
            seq += 1
        if size == 0:
            raise InvalidRequest("the uploaded file is empty", param="file", code="empty_file")
        return size, digest.hexdigest()

    async def _replay(self, submission: Submission, fingerprint: str) -> JobRecord | None:
        existing = await self.store.by_idempotency_key(submission.owner, submission.idempotency_key or "")
        if existing is not None and existing.fingerprint != fingerprint:
            raise Conflict("this Idempotency-Key was used with a different request", param="Idempotency-Key",
                              code="idempotency_key_reused")
        return existing

    async def get(self, job_id: str, owner: str) -> JobRecord | None:
        return await self.store.get(job_id, owner)

    async def list(self, owner: str, status: str | None, limit: int, after: str | None) -> tuple[list[JobRecord], bool]:
        cursor = None
        if after is not None:
            cursor = await self.store.get(after, owner)
            if cursor is None:
                raise InvalidRequest(f"no job {after!r} to list after", param="after")
        rows = await self.store.list(owner, status, limit, cursor)
        return rows[:limit], len(rows) > limit

    async def cancel(self, job: JobRecord) -> bool:
        cancelled = await leases.cancel(self.store, job.id, job.owner, webhook_for(job, "cancelled"), self.keep_audio)
        if cancelled and self.runner is not None:
            self.runner.stop_local(job.id)
            self.runner.on_finished()
        return cancelled

    async def delete(self, job: JobRecord) -> None:
        if job.status in ("queued", "in_progress"):
            await self.cancel(job)
        await self.store.delete(job.id)

    async def transcript(self, job: JobRecord) -> Transcript:
        """The completed job's transcript: its stored segments joined as the synchronous path joins them."""
        stored = await self.store.segments(job.id)
        windows = [(segment.start_sample / RATE, segment.end_sample / RATE) for segment in stored]
        results = [decode_result(segment.result) if segment.result else None for segment in stored]
        options = options_of(job)
        return assemble(windows, results, job.duration or 0.0, options.language, words=options.words)


def stored_options(submission: Submission) -> dict:
    """The job's options as stored: the engine's options (generically, so fields added to them are kept) and
    the transcript's default format."""
    return {"transcription": to_plain(submission.options), "response_format": submission.response_format}


def options_of(job: JobRecord) -> TranscriptionOptions:
    return from_plain(TranscriptionOptions, job.options["transcription"])


def _fingerprint(submission: Submission, file_hash: str) -> str:
    fields = json.dumps([stored_options(submission), submission.metadata, submission.webhook_url, file_hash],
                        sort_keys=True)
    return hashlib.sha256(fields.encode()).hexdigest()
