"""Crashes and replicas, with real server processes (tests profile, float32) and real databases:
- kill -9 of the only SQLite server in the middle of a job, then a restart: the job resumes and completes,
  and its transcript is the synchronous answer for the same audio (what an uninterrupted run gives);
- two servers on one PostgreSQL share 20 jobs: each completes exactly once and both did some; kill -9 of
  the one running a job: the other finishes it after the lease, with the same transcript.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from app.jobs.schema import job_segments, jobs
from app.jobs.store import JobStore
from bench import job_servers as processes
from tests.app.jobs.databases import fresh_postgres
from tests.app.jobs.servers import wait_completed
from tests.server import poll

pytestmark = pytest.mark.slow
# One segment in the engine at a time and 5 s segments: a 90 s job takes long enough to be killed midway.
SLOW_JOB = {"MEGA_ASR_JOB_ENGINE_WINDOW": "1", "MEGA_ASR_MAX_SEGMENT_SECONDS": "5"}


def rows(database_url: str) -> tuple[list, list]:
    async def read():
        store = await JobStore.open(database_url)
        async with store.engine.connect() as conn:
            job_rows = (await conn.execute(select(jobs))).all()
            segment_rows = (await conn.execute(select(job_segments))).all()
        await store.close()
        return job_rows, segment_rows

    return asyncio.run(read())


def wait_midway(server: processes.Server, job_id: str) -> float:
    """Poll until the job has stored some segments but is not done; returns the audio seconds done."""
    seen = {}

    def midway() -> bool:
        seen.update(processes.job(server.base, job_id))
        total = seen["progress"]["audio_seconds_total"]
        return seen["status"] == "in_progress" and 0 < seen["progress"]["audio_seconds_done"] < 0.7 * total

    poll(midway, 240, "the job never got midway")
    return seen["progress"]["audio_seconds_done"]


def test_kill_9_of_the_only_sqlite_server_mid_job_then_a_restart_resumes_and_completes(tmp_path):
    database = f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"
    audio = processes.fixture_speech(90)
    with processes.servers(database, tmp_path, 1, **SLOW_JOB) as (server,):
        job = processes.submit(server.base, audio, language="en")
        done_before = wait_midway(server, job["id"])
        server.kill9()
    stored_before = len(rows(database)[1])
    assert stored_before > 0
    with processes.servers(database, tmp_path, 1, **SLOW_JOB) as (restarted,):
        state = wait_completed(restarted, job["id"])
        assert state["progress"]["audio_seconds_done"] == pytest.approx(state["duration"])
        assert processes.transcript(restarted.base, job["id"]) == processes.synchronous(restarted.base, audio,
                                                                                         language="en")
    (record,) = rows(database)[0]
    assert record.attempts == 2 and done_before > 0
    assert str(restarted.pid) in record.completed_by


@pytest.mark.timeout(900)
def test_two_servers_on_one_postgresql_share_twenty_jobs_and_survive_a_kill_9(tmp_path):
    with fresh_postgres() as database, processes.servers(database, tmp_path, 2, **SLOW_JOB) as (a, b):
        clips = [processes.fixture_speech(8, seed=i) for i in range(20)]
        ids = [processes.submit((a, b)[i % 2].base, clip)["id"] for i, clip in enumerate(clips)]
        for job_id in ids:
            wait_completed(a, job_id)
        job_rows, segment_rows = rows(database)
        assert sorted(r.id for r in job_rows) == sorted(ids)
        assert all(r.status == "completed" and r.attempts == 1 for r in job_rows)  # each claimed and done once
        workers = {r.completed_by.split(":")[1] for r in job_rows}
        assert workers == {str(a.pid), str(b.pid)}, "both servers should have done some of the jobs"
        seqs = [(s.job_id, s.seq) for s in segment_rows]
        assert len(seqs) == len(set(seqs))
        for r in job_rows:  # every segment's audio counted once: the stored segments cover the file exactly
            assert r.audio_seconds_done == pytest.approx(r.duration, abs=1e-6)

        audio = processes.fixture_speech(90, seed=7)
        job = processes.submit(a.base, audio, language="en")
        wait_midway(a, job["id"])
        (holder,) = [r.lease_owner for r in rows(database)[0] if r.id == job["id"]]
        victim, survivor = (a, b) if f":{a.pid}:" in holder else (b, a)
        victim.kill9()
        state = wait_completed(survivor, job["id"])
        (record,) = [r for r in rows(database)[0] if r.id == job["id"]]
        assert record.attempts == 2 and f":{survivor.pid}:" in record.completed_by
        assert state["progress"]["audio_seconds_done"] == pytest.approx(state["duration"])
        assert processes.transcript(survivor.base, job["id"]) == processes.synchronous(survivor.base, audio,
                                                                                        language="en")


def test_sigterm_mid_job_keeps_the_stored_segments_and_a_restart_resumes_after_them(tmp_path):
    import signal

    database = f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"
    audio = processes.fixture_speech(90, seed=2)
    with processes.servers(database, tmp_path, 1, **SLOW_JOB) as (server,):
        job = processes.submit(server.base, audio, language="en")
        wait_midway(server, job["id"])
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    (record,), stored = rows(database)
    assert record.status == "in_progress" and record.lease_expires_at == 0.0  # given back, not left to expire
    assert stored and record.audio_seconds_done == pytest.approx(sum(s.end_sample - s.start_sample
                                                                     for s in stored) / 16_000)
    kept = {(s.seq, s.result) for s in stored}
    with processes.servers(database, tmp_path, 1, **SLOW_JOB) as (restarted,):
        wait_completed(restarted, job["id"], timeout=120)
        assert processes.transcript(restarted.base, job["id"]) == processes.synchronous(restarted.base, audio,
                                                                                         language="en")
    assert kept <= {(s.seq, s.result) for s in rows(database)[1]}  # what was stored before stayed as it was
