"""The job store on SQLite and PostgreSQL: migrations, claims under leases, segments, completion exactly
once, cancel, the outbox, listing and retention."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.jobs import leases
from app.jobs.delivery import claim_due, record
from app.jobs.schema import webhook_outbox
from app.jobs.store import JobStore, LeaseLost, OutboxMessage

ROOT = Path(__file__).resolve().parents[3]


async def _queued(store: JobStore, job_id: str, owner: str = "", audio: bytes = b"RIFF....") -> None:
    await store.create(job_id, owner, {"language": None}, {"k": "v"}, None, "a.wav")
    await store.append_audio(job_id, 0, audio)
    await store.finish_upload(job_id, len(audio), 10.0, None, "f")


def run(coro):
    return asyncio.run(coro)


_OPEN_AND_SAY_REVISION = """
import asyncio, sys
from app.jobs import migrate
from app.jobs.store import JobStore
async def main():
    store = await JobStore.open(sys.argv[1])
    async with store.engine.connect() as conn:
        print(await conn.run_sync(migrate.current_revision))
    await store.close()
asyncio.run(main())
"""


def test_migrations_are_idempotent_and_safe_when_replicas_start_at_once(database_url):
    """Four processes (replicas) open a fresh store at the same moment: one migrates, all see the schema."""
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_SAY_REVISION, database_url], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["0001"] * 4

    async def reopen():  # and again in one process, several at once: nothing left to do, nothing breaks
        stores = await asyncio.gather(*(JobStore.open(database_url) for _ in range(3)))
        for store in stores:
            await store.close()

    run(reopen())


def test_each_job_is_claimed_by_exactly_one_of_many_concurrent_claimers(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        for i in range(12):
            await _queued(store, f"job_{i:02d}")
        claims = await asyncio.gather(*(leases.claim(store, f"w{i % 3}", 30) for i in range(20)))
        await store.close()
        return [c.id for c in claims if c is not None]

    claimed = run(scenario())
    assert len(claimed) == len(set(claimed))
    assert 1 <= len(claimed) <= 12


def test_an_expired_lease_is_taken_over_and_the_old_holder_can_no_longer_write(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        await _queued(store, "job_a")
        first = await leases.claim(store, "dead", lease_seconds=0.2)
        assert first is not None and first.status == "in_progress"
        assert await leases.claim(store, "alive", lease_seconds=30) is None  # still leased
        await asyncio.sleep(0.3)  # let the lease run out (the condition under test is time itself)
        second = await leases.claim(store, "alive", lease_seconds=30)
        assert second is not None and second.id == "job_a" and second.attempts == 2
        with pytest.raises(LeaseLost):
            await leases.put_segment(store, "job_a", "dead", 0, (0, 16000), "speech", "{}", 1.0)
        with pytest.raises(LeaseLost):
            await leases.heartbeat(store, "job_a", "dead", 30)
        await leases.heartbeat(store, "job_a", "alive", 30)
        await store.close()

    run(scenario())


def test_segments_are_stored_once_and_completion_happens_once(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        await _queued(store, "job_a")
        job = await leases.claim(store, "w", 30)
        await leases.put_segment(store, job.id, "w", 0, (0, 16000), "speech", '{"text": "a"}', 1.0)
        await leases.put_segment(store, job.id, "w", 0, (0, 16000), "speech", '{"text": "b"}', 1.0)  # again
        await leases.put_segment(store, job.id, "w", 1, (16000, 20000), "silence", None, 0.25)
        segments = await store.segments(job.id)
        assert [(s.seq, s.result) for s in segments] == [(0, '{"text": "a"}'), (1, None)]
        assert (await store.get(job.id)).audio_seconds_done == pytest.approx(1.25)
        hook = OutboxMessage("msg_1", job.id, "http://127.0.0.1:9/hook", "{}")
        await leases.complete(store, job.id, "w", 1.25, hook, keep_audio=False)
        with pytest.raises(LeaseLost):
            await leases.complete(store, job.id, "w", 1.25, hook, keep_audio=False)
        done = await store.get(job.id)
        assert (done.status, done.completed_by, done.duration) == ("completed", "w", 1.25)
        with pytest.raises(LeaseLost):
            await store.audio_chunk(job.id, 0)  # the audio went with completion
        async with store.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(webhook_outbox))).scalar() == 1
        await store.close()

    run(scenario())


def test_cancel_stops_a_running_job_and_refuses_a_finished_one(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        await _queued(store, "job_a", owner="o")
        job = await leases.claim(store, "w", 30)
        assert not await leases.cancel(store, job.id, "someone else", None, keep_audio=False)
        assert await leases.cancel(store, job.id, "o", None, keep_audio=False)
        with pytest.raises(LeaseLost):
            await leases.heartbeat(store, job.id, "w", 30)
        assert not await leases.cancel(store, job.id, "o", None, keep_audio=False)
        assert (await store.get(job.id)).status == "cancelled"
        await store.close()

    run(scenario())


def test_lists_are_newest_first_per_owner_with_a_cursor_and_retention_purges(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        for i in range(5):
            await _queued(store, f"job_{i}", owner="o")
        await _queued(store, "job_other", owner="p")
        first = await store.list("o", None, 2, None)
        assert [j.id for j in first] == ["job_4", "job_3", "job_2"]  # limit + 1: there is more
        rest = await store.list("o", None, 10, first[1])
        assert [j.id for j in rest] == ["job_2", "job_1", "job_0"]
        assert await store.get("job_other", "o") is None and await store.get("job_other", "p") is not None
        job = await leases.claim(store, "w", 30)
        await leases.complete(store, job.id, "w", 1.0, None, keep_audio=True)
        assert await store.purge(finished_before=time.time() - 3600, uploading_before=0) == 0
        assert await store.purge(finished_before=time.time() + 1, uploading_before=0) == 1
        assert await store.get(job.id) is None
        assert (await store.counts()) == {"queued": 5}
        assert await store.backlog_seconds() == pytest.approx(50.0)
        await store.close()

    run(scenario())


def test_outbox_deliveries_are_claimed_once_and_rescheduled(database_url):
    async def scenario():
        store = await JobStore.open(database_url)
        await _queued(store, "job_a")
        job = await leases.claim(store, "w", 30)
        await leases.complete(store, job.id, "w", 1.0, OutboxMessage("msg_x", job.id, "http://h/", "{}"), False)
        first, second = await asyncio.gather(claim_due(store, 10), claim_due(store, 10))
        assert len(first) + len(second) == 1
        (message,) = first + second
        await record(store, message, delivered=False, error="HTTP 500", next_attempt_at=time.time() - 1)
        (again,) = await claim_due(store, 10)
        assert (again.id, again.attempts) == ("msg_x", 1)
        await record(store, again, delivered=True, error=None, next_attempt_at=None)
        assert await claim_due(store, 10) == []
        await store.close()

    run(scenario())
