"""Background jobs, measured in one run on the demo profile (real Whisper tiny.en / base, `dtype=auto`):

1. throughput: the same speech as one synchronous request and as one job, on an idle server (target: job
   >= 0.9x the synchronous throughput);
2. a short synchronous clip's p50 latency, idle and while a 2-hour speech job runs (target <= 1.5x);
3. kill -9 in the middle of jobs: the only SQLite server, then restarted; and (with a PostgreSQL URL) one of
   two servers sharing it. Every job's completion is counted by a real webhook receiver: lost = a job with
   no completion event, duplicated = a job with two (target 0 and 0); each killed job's transcript is
   compared with the synchronous answer for the same audio.

    python -m bench.jobs [--postgres URL] [--out bench/results/jobs.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import soundfile as sf

from app.audio.decoding import decode_audio
from bench import job_servers as servers
from bench.job_receiver import Receiver
from bench.machine import cpu_meter, machine_description
from tests.server import poll

SECRET = "whsec_" + "bWVnYS1hc3ItYmVuY2gtc2VjcmV0LWtleQ=="
DEMO = {"MEGA_ASR_PROFILE": "demo", "MEGA_ASR_DTYPE": "auto", "MEGA_ASR_DEVICE": "auto", "MEGA_ASR_WARMUP": "true",
        "MEGA_ASR_WEBHOOK_SECRET": SECRET, "MEGA_ASR_WEBHOOK_ALLOWED_HOSTS": "127.0.0.0/8"}
# Kill tests: one segment in the engine at a time and 5 s segments, so there is a middle to kill in.
KILLABLE = {**DEMO, "MEGA_ASR_JOB_ENGINE_WINDOW": "1", "MEGA_ASR_MAX_SEGMENT_SECONDS": "5"}


def wait_status(base: str, job_id: str, done, timeout: float = 3600, interval: float = 0.1) -> dict:
    state: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            state = servers.job(base, job_id)
            if done(state):
                return state
        time.sleep(interval)
    raise TimeoutError(f"job {job_id}: {state}")


def throughput(base: str, seconds: float, repeats: int) -> dict:
    audio = servers.fixture_speech(seconds, seed=11)
    sync_times, job_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        servers.synchronous(base, audio, language="en")
        sync_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        job = servers.submit(base, audio, language="en")
        wait_status(base, job["id"], lambda s: s["status"] == "completed")
        job_times.append(time.perf_counter() - started)
    sync, job = statistics.median(sync_times), statistics.median(job_times)
    return {"audio_seconds": seconds, "sync_seconds": sync_times, "job_seconds": job_times,
            "sync_audio_s_per_s": seconds / sync, "job_audio_s_per_s": seconds / job, "ratio": sync / job}


def two_hour_speech(path: Path) -> float:
    """Two hours of the fixtures' speech with short pauses, FLAC, written block by block."""
    block = decode_audio(servers.fixture_speech(600, seed=5), max_seconds=900).samples
    total = 0
    with sf.SoundFile(path, "w", 16_000, 1, format="FLAC") as out:
        while total < 7200 * 16_000:
            piece = block[: 7200 * 16_000 - total]
            out.write(piece)
            total += len(piece)
    return total / 16_000


def short_clip_latency(base: str, long_path: Path, samples: int) -> dict:
    clip = (servers.FIXTURES / "human" / "goforward.wav").read_bytes()

    def timed() -> float:
        started = time.perf_counter()
        answer = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("c.wav", clip)}, timeout=600)
        answer.raise_for_status()
        return time.perf_counter() - started

    timed()
    idle = [timed() for _ in range(samples)]  # before the job, and again after it (drift on a shared machine)
    with long_path.open("rb") as upload:
        answer = httpx.post(base + servers.JOBS, files={"file": ("long.flac", upload)}, data={"language": "en"},
                            timeout=600)
    job = answer.json()
    before = wait_status(base, job["id"], lambda s: s["progress"]["audio_seconds_done"] > 60)
    loaded = [timed() for _ in range(samples)]
    after = servers.job(base, job["id"])
    assert after["status"] == "in_progress", after
    httpx.post(f"{base}{servers.JOBS}/{job['id']}/cancel", timeout=60).raise_for_status()
    wait_status(base, job["id"], lambda s: s["status"] == "cancelled")
    idle += [timed() for _ in range(samples)]
    return {"idle": idle, "loaded": loaded, "idle_p50": statistics.median(idle),
            "loaded_p50": statistics.median(loaded), "ratio": statistics.median(loaded) / statistics.median(idle),
            "job_audio_seconds_done_while_measuring": after["progress"]["audio_seconds_done"]
            - before["progress"]["audio_seconds_done"]}


def kill_test(database: str, tmp: Path, replicas: int, jobs: int, receiver: Receiver) -> dict:
    """`jobs` jobs on `replicas` servers; kill -9 the one running a job midway; restart it when it was the only
    one; count completion events per job and compare killed jobs' transcripts with the synchronous answer."""
    clips = [servers.fixture_speech(40, seed=20 + i) for i in range(jobs)]
    started = [servers.start(database, tmp / f"kill{i}.log", **KILLABLE) for i in range(replicas)]
    try:
        ids = [servers.submit(started[i % replicas].base, clip, language="en", webhook_url=receiver.url)["id"]
               for i, clip in enumerate(clips)]
        midway = lambda s: s["status"] == "in_progress" and 0 < s["progress"]["audio_seconds_done"] < 25
        victim_job = ids[0]
        wait_status(started[0].base, victim_job, midway, interval=0.02)
        victim = started[0] if replicas == 1 else _holder(started, database, victim_job)
        victim.kill9()
        survivors = [s for s in started if s is not victim] or [servers.start(database, tmp / "restart.log",
                                                                               **KILLABLE)]
        started = survivors
        for job_id in ids:
            wait_status(survivors[0].base, job_id, lambda s: s["status"] in ("completed", "failed"), interval=0.2)
        poll(lambda: all(receiver.events(job_id) for job_id in ids), 120, "webhooks missing")
        equal = servers.transcript(survivors[0].base, victim_job) == servers.synchronous(survivors[0].base,
                                                                                          clips[0], language="en")
        events = {job_id: receiver.events(job_id) for job_id in ids}
        return {"replicas": replicas, "jobs": jobs, "lost": sum(1 for e in events.values() if not e),
                "duplicated": sum(1 for e in events.values() if len(e) > 1),
                "killed_job_transcript_equals_sync": equal,
                "statuses": [servers.job(survivors[0].base, job_id)["status"] for job_id in ids]}
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                server.process.wait(timeout=60)


def _holder(started: list, database: str, job_id: str):
    import asyncio

    from sqlalchemy import select

    from app.jobs.schema import jobs
    from app.jobs.store import JobStore

    async def owner() -> str:
        store = await JobStore.open(database)
        async with store.engine.connect() as conn:
            value = (await conn.execute(select(jobs.c.lease_owner).where(jobs.c.id == job_id))).scalar()
        await store.close()
        return value or ""

    holder = asyncio.run(owner())
    return next(server for server in started if f":{server.pid}:" in holder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=os.environ.get("MEGA_ASR_TEST_DATABASE_URL"),
                        help="a PostgreSQL URL whose server may create databases (two-replica kill test)")
    parser.add_argument("--seconds", type=float, default=300.0, help="speech for the throughput comparison")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20, help="short clips timed under the job (and twice "
                        "as many idle: before and after it)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/jobs.json"))
    args = parser.parse_args(argv)
    report: dict = {"machine": machine_description()}
    print(report["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as directory, Receiver().serving() as receiver:
        tmp = Path(directory)
        with cpu_meter() as share:
            with servers.servers(f"sqlite+aiosqlite:///{tmp / 'a.sqlite3'}", tmp, 1, **DEMO) as (server,):
                report["dtype"] = httpx.get(server.base + "/v1/models").json()["data"][0]["dtype"]
                print(f"dtype: {report['dtype']}", flush=True)
                report["throughput"] = throughput(server.base, args.seconds, args.repeats)
                print_throughput(report["throughput"])
                long_path = tmp / "two-hours.flac"
                two_hour_speech(long_path)
                report["latency"] = short_clip_latency(server.base, long_path, args.samples)
                print_latency(report["latency"])
            report["kills"] = [kill_test(f"sqlite+aiosqlite:///{tmp / 'k.sqlite3'}", tmp, 1, 4, receiver)]
            if args.postgres:
                from tests.app.jobs.databases import fresh_postgres

                with fresh_postgres() as database:
                    report["kills"].append(kill_test(database, tmp, 2, 6, receiver))
            else:
                print("no PostgreSQL URL (--postgres or MEGA_ASR_TEST_DATABASE_URL): two-replica kill test skipped")
            print_kills(report["kills"])
        report["others_cpu_share"] = share.others_share
        print(f"other processes used {share.others_share:.0%} of the machine's CPU during the run "
              f"({share.wall_seconds:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_throughput(result: dict) -> None:
    print(f"throughput, {result['audio_seconds']:.0f} s of speech on an idle server: synchronous "
          f"{result['sync_audio_s_per_s']:.2f} audio s/s, job {result['job_audio_s_per_s']:.2f} audio s/s: "
          f"job / sync = {result['ratio']:.3f} (target >= 0.9)", flush=True)


def print_latency(result: dict) -> None:
    print(f"short clip (2.8 s) p50: idle {result['idle_p50']:.3f} s, while a 2-hour job runs "
          f"{result['loaded_p50']:.3f} s: {result['ratio']:.3f}x (target <= 1.5; the job did "
          f"{result['job_audio_seconds_done_while_measuring']:.0f} s of audio meanwhile)", flush=True)


def print_kills(results: list[dict]) -> None:
    for result in results:
        print(f"kill -9, {result['replicas']} server(s), {result['jobs']} jobs: lost {result['lost']}, duplicated "
              f"{result['duplicated']} (target 0 and 0); killed job's transcript equals the synchronous answer: "
              f"{result['killed_job_transcript_equals_sync']}; statuses {sorted(set(result['statuses']))}")


if __name__ == "__main__":
    raise SystemExit(main())
