"""Run the real app under uvicorn on a loopback port, in a background thread, for integration tests."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import soundfile as sf
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app: FastAPI, *, wait_ready: bool = True, timeout: float = 120.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:<free port>; yield its base URL; stop (with lifespan shutdown) after."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    app.state.service.request_shutdown = lambda: setattr(server, "should_exit", True)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    poll(lambda: server.started, timeout, "server did not start")
    if wait_ready:
        poll(lambda: _ready_or_failed(base), timeout, "service never became ready")
        if httpx.get(f"{base}/readyz").status_code != 200:
            server.should_exit = True
            raise AssertionError(f"service failed to load: {app.state.service.load_error}")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _ready_or_failed(base: str) -> bool:
    answer = httpx.get(f"{base}/readyz")
    return answer.status_code == 200 or answer.json().get("status") == "failed"


def poll(predicate, timeout: float, message: str) -> None:
    """Wait for a condition, checking often; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


def wav_bytes(samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def metric(base: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples named `name` whose labels include `labels`, from the live /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total
