"""Claiming jobs and changing the state of a claimed job, always under its lease.

A replica claims the oldest queued job, or an in-progress job whose lease ran out (its replica died), and
renews the lease with a heartbeat. On PostgreSQL the claim reads with `FOR UPDATE SKIP LOCKED`, so replicas
claiming at once each get a different job without waiting for one another; on both databases the claim is a
compare-and-set on the row, so a job is never held by two replicas. Every write a replica makes into a job
it runs names its lease; a replica whose lease is gone gets LeaseLost and stops.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.jobs.schema import job_audio, job_segments, jobs
from app.jobs.store import JobRecord, JobStore, LeaseLost, OutboxMessage, insert_outbox


def _claimable(now: float):
    return or_(jobs.c.status == "queued",
               and_(jobs.c.status == "in_progress", jobs.c.lease_expires_at < now))


async def claim(store: JobStore, worker: str, lease_seconds: float) -> JobRecord | None:
    """The next job for `worker`, now leased to it, or None when there is nothing to do."""
    now = time.time()
    query = select(jobs.c.id).where(_claimable(now)).order_by(jobs.c.created_at, jobs.c.id).limit(1)
    if store.postgres:
        query = query.with_for_update(skip_locked=True)
    async with store.engine.begin() as conn:
        job_id = (await conn.execute(query)).scalar()
        if job_id is None:
            return None
        claimed = await conn.execute(
            update(jobs).where(jobs.c.id == job_id, _claimable(now))
            .values(status="in_progress", lease_owner=worker, lease_expires_at=now + lease_seconds,
                    started_at=func.coalesce(jobs.c.started_at, now), attempts=jobs.c.attempts + 1))
        if claimed.rowcount != 1:
            return None  # another replica won it between the read and the write (SQLite)
        row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return JobRecord.from_row(row)


def _held(job_id: str, worker: str):
    return and_(jobs.c.id == job_id, jobs.c.lease_owner == worker, jobs.c.status == "in_progress")


async def heartbeat(store: JobStore, job_id: str, worker: str, lease_seconds: float) -> None:
    """Renew the lease; LeaseLost when the job was cancelled, deleted or taken over."""
    async with store.engine.begin() as conn:
        renewed = await conn.execute(update(jobs).where(_held(job_id, worker))
                                     .values(lease_expires_at=time.time() + lease_seconds))
    if renewed.rowcount != 1:
        raise LeaseLost(job_id)


async def release(store: JobStore, job_id: str, worker: str) -> None:
    """Give the job up now (shutting down): another replica may claim it at once and resumes it."""
    async with store.engine.begin() as conn:
        await conn.execute(update(jobs).where(_held(job_id, worker)).values(lease_expires_at=0.0))


async def put_segment(store: JobStore, job_id: str, worker: str, seq: int, bounds: tuple[int, int],
                      outcome: str, result: str | None, seconds: float) -> None:
    """Store one finished segment and count its audio as done, if this replica still holds the job. A
    segment already stored (a resumed job redoing its last group) is left as it is."""
    insert = (postgresql.insert if store.postgres else sqlite.insert)(job_segments).values(
        job_id=job_id, seq=seq, start_sample=bounds[0], end_sample=bounds[1], outcome=outcome, result=result)
    async with store.engine.begin() as conn:
        held = await conn.execute(update(jobs).where(_held(job_id, worker))
                                  .values(audio_seconds_done=jobs.c.audio_seconds_done + seconds))
        if held.rowcount != 1:
            raise LeaseLost(job_id)
        added = await conn.execute(insert.on_conflict_do_nothing(index_elements=["job_id", "seq"]))
        if added.rowcount == 0:  # stored before: do not count its audio twice
            await conn.execute(update(jobs).where(jobs.c.id == job_id)
                               .values(audio_seconds_done=jobs.c.audio_seconds_done - seconds))


async def complete(store: JobStore, job_id: str, worker: str, duration: float, webhook: OutboxMessage | None,
                   keep_audio: bool) -> None:
    """Completed, exactly once: the first replica holding the lease wins; the webhook is queued in the same
    transaction (outbox), and the audio is deleted unless it is kept."""
    await _finish(store, job_id, worker, webhook, keep_audio, status="completed", duration=duration,
                  audio_seconds_done=duration, completed_by=worker)


async def fail(store: JobStore, job_id: str, worker: str, error: dict, webhook: OutboxMessage | None,
               keep_audio: bool) -> None:
    await _finish(store, job_id, worker, webhook, keep_audio, status="failed", error=json.dumps(error),
                  completed_by=worker)


async def _finish(store: JobStore, job_id: str, worker: str, webhook: OutboxMessage | None, keep_audio: bool,
                  **values) -> None:
    async with store.engine.begin() as conn:
        done = await conn.execute(update(jobs).where(_held(job_id, worker)).values(
            completed_at=time.time(), lease_owner=None, lease_expires_at=None, **values))
        if done.rowcount != 1:
            raise LeaseLost(job_id)
        await insert_outbox(conn, webhook)
        if not keep_audio:
            await conn.execute(delete(job_audio).where(job_audio.c.job_id == job_id))


async def cancel(store: JobStore, job_id: str, owner: str, webhook: OutboxMessage | None,
                 keep_audio: bool) -> bool:
    """Cancel a queued or running job (its replica notices at its next heartbeat); False when it has
    already finished."""
    async with store.engine.begin() as conn:
        done = await conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner,
                                                     jobs.c.status.in_(("queued", "in_progress")))
                                  .values(status="cancelled", completed_at=time.time(), lease_owner=None,
                                          lease_expires_at=None))
        if done.rowcount != 1:
            return False
        await insert_outbox(conn, webhook)
        if not keep_audio:
            await conn.execute(delete(job_audio).where(job_audio.c.job_id == job_id))
    return True
