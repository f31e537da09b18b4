"""The job store: one interface over SQLite (embedded default) and PostgreSQL (several replicas).

SQLAlchemy 2 Core on its async drivers (aiosqlite, asyncpg): one query text for both databases, with the
PostgreSQL-only parts (`FOR UPDATE SKIP LOCKED` when claiming) switched by dialect. Every state change a
replica makes on a job it runs is conditional on still holding the job's lease (`lease_owner`), so a replica
that lost its lease (it stalled, another one took over) cannot write into the job any more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.jobs import migrate
from app.jobs.schema import job_audio, job_segments, jobs, webhook_outbox

CHUNK_BYTES = 1 << 20  # the audio is stored in chunks of this size
ACTIVE = ("queued", "in_progress")
FINISHED = ("completed", "failed", "cancelled")


class LeaseLost(Exception):
    """This replica no longer holds the job (its lease ran out and another replica took it, or it was
    cancelled or deleted): stop working on it."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    status: str
    created_at: float
    started_at: float | None
    completed_at: float | None
    filename: str | None
    options: dict[str, Any]
    metadata: dict[str, str]
    webhook_url: str | None
    error: dict[str, Any] | None
    audio_bytes: int
    audio_seconds_total: float | None
    audio_seconds_done: float
    duration: float | None
    lease_owner: str | None
    attempts: int
    completed_by: str | None
    fingerprint: str | None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        m = row._mapping
        return cls(id=m["id"], owner=m["owner"], status=m["status"], created_at=m["created_at"],
                   started_at=m["started_at"], completed_at=m["completed_at"], filename=m["filename"],
                   options=json.loads(m["options"]), metadata=json.loads(m["meta"]), webhook_url=m["webhook_url"],
                   error=json.loads(m["error"]) if m["error"] else None, audio_bytes=m["audio_bytes"],
                   audio_seconds_total=m["audio_seconds_total"], audio_seconds_done=m["audio_seconds_done"],
                   duration=m["duration"], lease_owner=m["lease_owner"], attempts=m["attempts"],
                   completed_by=m["completed_by"], fingerprint=m["fingerprint"])


@dataclass(frozen=True)
class StoredSegment:
    seq: int
    start_sample: int
    end_sample: int
    outcome: str
    result: str | None  # JSON (app/jobs/codec.py)


@dataclass(frozen=True)
class OutboxMessage:
    id: str  # webhook-id
    job_id: str
    url: str
    body: str
    attempts: int = 0


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # WAL: readers do not wait for the writer
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def open(cls, url: str) -> JobStore:
        """Connect and migrate (safe when several replicas start at once)."""
        if url.startswith("sqlite"):
            from pathlib import Path

            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        await migrate.upgrade(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- submitting ----------------------------------------------------------------------------------
    async def create(self, job_id: str, owner: str, options: dict, metadata: dict, webhook_url: str | None,
                     filename: str | None) -> None:
        """A job whose upload is streaming in: not listed, not claimable, until finish_upload()."""
        async with self.engine.begin() as conn:
            await conn.execute(jobs.insert().values(
                id=job_id, owner=owner, status="uploading", created_at=time.time(), filename=filename,
                options=json.dumps(options), meta=json.dumps(metadata), webhook_url=webhook_url, audio_bytes=0,
                audio_seconds_done=0.0, attempts=0))

    async def append_audio(self, job_id: str, seq: int, data: bytes) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(job_audio.insert().values(job_id=job_id, seq=seq, data=data))

    async def finish_upload(self, job_id: str, audio_bytes: int, audio_seconds: float | None,
                            idempotency_key: str | None, fingerprint: str) -> None:
        """Queue the job. Raises sqlalchemy.exc.IntegrityError when another job holds the idempotency key."""
        async with self.engine.begin() as conn:
            await conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                status="queued", audio_bytes=audio_bytes, audio_seconds_total=audio_seconds,
                idempotency_key=idempotency_key, fingerprint=fingerprint, created_at=time.time()))

    async def by_idempotency_key(self, owner: str, key: str) -> JobRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key,
                                                         jobs.c.status != "uploading"))).first()
        return JobRecord.from_row(row) if row else None

    # --- reading -------------------------------------------------------------------------------------
    async def get(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        """The job; with `owner`, only if it belongs to that owner (else None, as if it did not exist)."""
        query = select(jobs).where(jobs.c.id == job_id, jobs.c.status != "uploading")
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return JobRecord.from_row(row) if row else None

    async def list(self, owner: str, status: str | None, limit: int, after: JobRecord | None) -> list[JobRecord]:
        """Newest first; `after` = the last job of the previous page. Returns up to limit + 1 (has_more)."""
        query = select(jobs).where(jobs.c.owner == owner, jobs.c.status != "uploading")
        if status is not None:
            query = query.where(jobs.c.status == status)
        if after is not None:
            query = query.where(or_(jobs.c.created_at < after.created_at,
                                    and_(jobs.c.created_at == after.created_at, jobs.c.id < after.id)))
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            return [JobRecord.from_row(row) for row in (await conn.execute(query))]

    async def segments(self, job_id: str) -> list[StoredSegment]:
        query = select(job_segments).where(job_segments.c.job_id == job_id).order_by(job_segments.c.seq)
        async with self.engine.connect() as conn:
            return [StoredSegment(r.seq, r.start_sample, r.end_sample, r.outcome, r.result)
                    for r in await conn.execute(query)]

    async def audio_chunk(self, job_id: str, seq: int) -> bytes:
        async with self.engine.connect() as conn:
            data = (await conn.execute(select(job_audio.c.data).where(job_audio.c.job_id == job_id,
                                                                      job_audio.c.seq == seq))).scalar()
        if data is None:
            raise LeaseLost(f"job {job_id}: audio chunk {seq} is gone (the job was deleted)")
        return bytes(data)

    async def counts(self) -> dict[str, int]:
        query = select(jobs.c.status, func.count()).where(jobs.c.status != "uploading").group_by(jobs.c.status)
        async with self.engine.connect() as conn:
            return {status: count for status, count in await conn.execute(query)}

    async def backlog_seconds(self) -> float:
        remaining = func.coalesce(jobs.c.audio_seconds_total, 0.0) - jobs.c.audio_seconds_done
        query = select(func.coalesce(func.sum(remaining), 0.0)).where(jobs.c.status.in_(ACTIVE))
        async with self.engine.connect() as conn:
            return max(0.0, float((await conn.execute(query)).scalar() or 0.0))

    # --- deleting ------------------------------------------------------------------------------------
    async def delete(self, job_id: str) -> None:
        """The job, its audio and its segments (a replica running it loses its lease)."""
        async with self.engine.begin() as conn:
            await _delete_jobs(conn, [job_id])

    async def purge(self, finished_before: float, uploading_before: float) -> int:
        """Finished jobs past retention, and uploads that never finished (their replica died mid-upload)."""
        query = select(jobs.c.id).where(or_(
            and_(jobs.c.status.in_(FINISHED), jobs.c.completed_at < finished_before),
            and_(jobs.c.status == "uploading", jobs.c.created_at < uploading_before))).limit(500)
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(query)).scalars())
            await _delete_jobs(conn, ids)
        return len(ids)


async def _delete_jobs(conn: AsyncConnection, ids: Sequence[str]) -> None:
    if not ids:
        return
    await conn.execute(delete(job_audio).where(job_audio.c.job_id.in_(ids)))
    await conn.execute(delete(job_segments).where(job_segments.c.job_id.in_(ids)))
    await conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))


def outbox_row(message: OutboxMessage, now: float) -> dict:
    return {"id": message.id, "job_id": message.job_id, "url": message.url, "body": message.body,
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}


async def insert_outbox(conn: AsyncConnection, message: OutboxMessage | None) -> None:
    if message is not None:
        await conn.execute(webhook_outbox.insert().values(**outbox_row(message, time.time())))
