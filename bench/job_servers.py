"""Real `mega-asr-server serve` processes sharing one job store: the job benchmark (bench/jobs.py) and the
crash and replica tests (tests/app/jobs) start, feed and kill them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from app.audio.decoding import decode_audio
from tests.server import free_port, poll, wav_bytes

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
JOBS = "/v1/audio/transcriptions/jobs"
# Short leases and polls so a dead replica's job is taken over in seconds; float32 so that every row's
# greedy output is the same whatever rows run beside it (the comparisons below are exact; in bf16 a job and
# a request batch their rows differently and a word can differ: README, Jobs).
FAST_JOBS = {"MEGA_ASR_JOB_LEASE_SECONDS": "3", "MEGA_ASR_JOB_HEARTBEAT_SECONDS": "0.5",
             "MEGA_ASR_JOB_POLL_SECONDS": "0.2", "MEGA_ASR_DTYPE": "float32", "MEGA_ASR_DEVICE": "cpu",
             "MEGA_ASR_WARMUP": "false"}


@dataclass
class Server:
    process: subprocess.Popen
    base: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def start(database_url: str, log: Path, **env: str) -> Server:
    port = free_port()
    environment = {**os.environ, "MEGA_ASR_HOST": "127.0.0.1", "MEGA_ASR_PORT": str(port),
                   "MEGA_ASR_PROFILE": "tests", "MEGA_ASR_DATABASE_URL": database_url, **FAST_JOBS, **env}
    out = log.open("a")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=environment,
                               stdout=out, stderr=subprocess.STDOUT, text=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    poll(lambda: process.poll() is not None or httpx.get(f"{server.base}/readyz").status_code == 200, 240,
         "server never became ready")
    assert process.poll() is None, log.read_text()[-4000:]
    return server


@contextlib.contextmanager
def servers(database_url: str, tmp_path: Path, count: int, **env: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for index in range(count):
            started.append(start(database_url, tmp_path / f"server{index}.log", **env))
        yield started
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.process.kill()


def fixture_speech(seconds: float, seed: int = 0) -> bytes:
    """Real speech: the fixture recordings in a shuffled order joined by 0.4 s pauses, about `seconds` long."""
    paths = sorted((FIXTURES / "human").glob("*.wav"))
    clips = [decode_audio(path.read_bytes(), max_seconds=120).samples for path in paths]
    order = np.random.default_rng(seed).permutation(len(clips)).tolist()
    parts, total = [], 0
    while total < seconds * 16_000:
        clip = clips[order[len(parts) // 2 % len(order)]]
        parts += [clip, np.zeros(6400, np.float32)]
        total += len(clip) + 6400
    return wav_bytes(np.concatenate(parts))


def submit(base: str, audio: bytes, **fields: str) -> dict:
    answer = httpx.post(base + JOBS, files={"file": ("speech.wav", audio, "audio/wav")}, data=fields, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.json()


def job(base: str, job_id: str) -> dict:
    return httpx.get(f"{base}{JOBS}/{job_id}", timeout=30).json()


def synchronous(base: str, audio: bytes, **fields: str) -> bytes:
    answer = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("speech.wav", audio, "audio/wav")},
                        data={"response_format": "verbose_json", **fields}, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.content


def transcript(base: str, job_id: str) -> bytes:
    answer = httpx.get(f"{base}{JOBS}/{job_id}/transcript", params={"response_format": "verbose_json"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.content
