"""Fault injection on a real server: model errors, deadlines, disconnects, overload, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading

import httpx
import pytest
import torch
import uvicorn

from app.cli import DrainingServer
from app.engine.pipeline import Pipeline
from app.main import create_app
from tests.app.conftest import fake_settings
from tests.fakes import FakeRecognizer, FakeRouter, tone
from tests.server import free_port, metric, poll, wav_bytes


def post(base: str, seconds: float, timeout: float = 60.0, **fields) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(tone(seconds)))},
                      data=fields, timeout=timeout)


def test_model_exception_is_500_with_request_id_and_worker_survives(fake_service):
    recognizer = FakeRecognizer(fail=lambda items: RuntimeError("kaboom") if items[0].duration > 2.5 else None)
    base, _ = fake_service(recognizer)
    failed = post(base, 3.0)
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "inference_failed" and "kaboom" not in error["message"]
    assert len(failed.headers["x-request-id"]) >= 16
    assert post(base, 1.0).status_code == 200


def test_cuda_oom_splits_the_batch_and_everyone_gets_an_answer(fake_service):
    recognizer = FakeRecognizer(fail=lambda items: torch.OutOfMemoryError("CUDA OOM") if len(items) > 1 else None)
    base, _ = fake_service(recognizer, max_batch_wait_ms=300.0)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(base, 1.0), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert max(len(b) for b in recognizer.batches) > 1  # it did try the full batch first


def test_deadline_is_504_and_frees_the_slot(fake_service):
    gate = threading.Event()
    base, _ = fake_service(FakeRecognizer(gate=gate), request_timeout_seconds=1.0, warmup=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(post, base, 1.0)  # occupies the worker until the gate opens
        poll(lambda: metric(base, "asr_inflight_requests") == 1, 10, "first request not in flight")
        late = post(base, 2.0)
        gate.set()
        assert blocker.result().status_code == 504 or blocker.result().status_code == 200
    assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
    poll(lambda: metric(base, "asr_queue_depth_audio_seconds") == 0, 10, "queue not freed")


def test_client_disconnect_drops_its_queued_segments(fake_service):
    gate = threading.Event()
    base, _ = fake_service(FakeRecognizer(gate=gate), warmup=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(post, base, 1.0)
        poll(lambda: metric(base, "asr_queue_depth_segments") == 0 and metric(base, "asr_inflight_requests") == 1,
             10, "first request not running")
        with pytest.raises(httpx.ReadTimeout):
            post(base, 2.0, timeout=1.5)  # gives up while queued behind the blocker
        poll(lambda: metric(base, "asr_cancelled_segments_total") == 1, 10, "queued segment not dropped")
        gate.set()
        assert blocker.result().status_code == 200


def test_overload_is_429_with_retry_after_and_accepted_work_completes(fake_service):
    gate = threading.Event()
    base, _ = fake_service(FakeRecognizer(gate=gate), max_queue_audio_seconds=5.0, max_batch_items=1,
                           warmup=False)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        running = pool.submit(post, base, 1.0)
        poll(lambda: metric(base, "asr_inflight_requests") == 1 and metric(base, "asr_queue_depth_segments") == 0,
             10, "first request not running")
        queued = pool.submit(post, base, 4.0)
        poll(lambda: metric(base, "asr_queue_depth_segments") == 1, 10, "second request not queued")
        refused = post(base, 3.0)
        gate.set()
        assert running.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_sigterm_drains_accepted_requests_then_exits():
    gate = threading.Event()
    app = create_app(fake_settings(drain_seconds=20.0, warmup=False),
                     pipeline=Pipeline(FakeRecognizer(gate=gate), FakeRouter()))
    port = free_port()
    server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"),
                            app.state.service)
    loop_box: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    poll(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30, "not ready")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        accepted = pool.submit(post, base, 1.0)
        poll(lambda: metric(base, "asr_inflight_requests") == 1, 10, "request not in flight")
        loop_box["loop"].call_soon_threadsafe(server.handle_exit, signal.SIGTERM, None)
        poll(lambda: httpx.get(f"{base}/readyz").status_code == 503, 10, "readiness did not turn 503")
        refused = post(base, 1.0)
        gate.set()
        assert accepted.result().status_code == 200
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
    thread.join(timeout=30)
    assert not thread.is_alive(), "server did not exit after draining"
