"""One thread runs the models: the loader and every model call share it (app/engine/inference_thread.py),
and nothing else in a request's path starts an OpenMP team of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import httpx

from app.engine.guards import GuardConfig
from app.engine.inference_thread import cpu_threads
from app.engine.pipeline import Pipeline
from app.main import create_app
from tests.app.conftest import fake_settings
from tests.fakes import FakeRecognizer, FakeRouter, tone
from tests.server import running, wav_bytes


class ThreadRecordingRecognizer(FakeRecognizer):
    threads: set[int]

    def recognize(self, items):
        self.threads.add(threading.get_ident())
        return super().recognize(items)


def test_models_load_on_the_thread_that_runs_them():
    recognizer = ThreadRecordingRecognizer()
    recognizer.threads = set()
    loaded_on = []

    def load(settings, metrics):
        loaded_on.append(threading.get_ident())
        return Pipeline(recognizer, FakeRouter(), description="fake", guards=GuardConfig(enabled=False))

    app = create_app(fake_settings(warmup=True), load_pipeline=load)
    with running(app) as base:
        answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(tone(1.0)))},
                            timeout=60)
        assert answer.status_code == 200, answer.text
    assert len(loaded_on) == 1 and loaded_on[0] != threading.get_ident()
    assert recognizer.threads == set(loaded_on)  # warm-up and the request ran where the models were loaded


PROBE = textwrap.dedent("""
    import json, os, threading, numpy as np, torch
    from app.engine.inference_thread import audio_executor, inference_executor
    from app.audio.vad import speech_probabilities

    def elsewhere(fn, *args):  # on a thread of its own, finished before going on
        thread = threading.Thread(target=fn, args=args)
        thread.start()
        thread.join()

    def tids():
        return set(os.listdir("/proc/self/task"))

    model = inference_executor(2)
    before = model.submit(torch.get_num_threads).result()
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 30)).astype(np.float32)
    elsewhere(speech_probabilities, [audio])  # loads silero_vad (and starts its threads, if any)
    elsewhere(torch.set_num_threads, 3)  # any code may set the process-wide count (silero_vad's import: 1)
    late_model = inference_executor(2)  # a model thread started afterwards
    audio_pool = audio_executor(1)
    audio_pool.submit(lambda: None).result()
    started = tids()
    audio_pool.submit(speech_probabilities, [audio[:48000], audio]).result()
    gate_team = len(tids() - started)  # OS threads the gate started: an OpenMP team's workers
    print(json.dumps({"before": before, "after": model.submit(torch.get_num_threads).result(),
                      "late": late_model.submit(torch.get_num_threads).result(),
                      "audio": audio_pool.submit(torch.get_num_threads).result(), "gate_team": gate_team}))
""")


def test_model_threads_keep_their_cpu_threads_and_the_gate_starts_no_team():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": 2, "after": 2, "late": 2, "audio": 1, "gate_team": 0}, seen


def test_cpu_threads_from_the_setting_the_environment_or_the_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert cpu_threads(0, quota) == cpus
    quota.write_text("50000 100000\n")  # half a CPU: one thread
    assert cpu_threads(0, quota) == 1
    assert cpu_threads(0, tmp_path / "absent") == cpus  # no cgroup v2 file: the affinity alone
    assert cpu_threads(3, quota) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert cpu_threads(0, quota) == 5
