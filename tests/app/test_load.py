"""A bounded load test on loopback: a few hundred requests at concurrency 32 against uvicorn serving the
tiny random-weight Qwen3-ASR profile. Zero lost requests, and only 200 or 429 answers."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from app.main import create_app
from tests.app.conftest import fake_settings
from tests.server import metric, running, wav_bytes

REQUESTS, CONCURRENCY = 320, 32


async def hammer(base: str, clips: list[bytes]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                answer = await client.post("/v1/audio/transcriptions", files={"file": ("c.wav", clips[i % len(clips)])})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    assert "text" in answer.json()
                elif answer.status_code == 429:
                    assert int(answer.headers["retry-after"]) >= 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


@pytest.mark.slow
def test_load_on_tiny_models_loses_nothing():
    rng = np.random.default_rng(0)
    clips = [wav_bytes((0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32)) for s in (0.5, 1.0, 2.0, 3.5)]
    # the admission limit is set so that some requests are refused at this concurrency
    app = create_app(fake_settings(profile="tests", max_queue_audio_seconds=40.0, max_batch_items=16,
                                   max_batch_wait_ms=10.0, max_new_tokens=16))
    with running(app, timeout=300) as base:
        statuses = asyncio.run(hammer(base, clips))
        accepted = metric(base, "asr_requests_total", {"endpoint": "transcriptions", "status": "200"})
        print(f"load test: sent {REQUESTS}, statuses {statuses}, batches {metric(base, 'asr_batch_size_count')}, "
              f"mean batch {metric(base, 'asr_batch_size_sum') / max(1, metric(base, 'asr_batch_size_count')):.1f}")
    assert sum(statuses.values()) == REQUESTS  # every request got exactly one answer
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.get(200, 0) == accepted and accepted > 0
