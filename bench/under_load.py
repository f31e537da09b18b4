"""Latency where the engine's scheduling shows (issue 11): a short clip's latency while other clients keep
the service busy with long recordings, and the time to the first streamed text of one long segment next to
the bare model cost of that segment (its prefill and one decode step)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx

from bench.clips import Clip
from models.recognition import RecognitionItem

URL_PATH = "/v1/audio/transcriptions"


async def _post(client: httpx.AsyncClient, url: str, clip: Clip, fields: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = await client.post(url, files={"file": (f"{clip.name}.wav", clip.wav(), "audio/wav")}, data=fields)
    answer.raise_for_status()
    return time.perf_counter() - started


async def _inflight(client: httpx.AsyncClient, base: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get(f"{base}/metrics")).text
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == "asr_inflight_requests"), 0.0)


async def short_clip_under_load(base: str, short: Clip, long: Clip, fields: dict[str, str], clients: int = 4,
                                samples: int = 8) -> dict:
    """p50 of `short` alone, then p50 of `short` while `clients` clients keep sending `long` back to back."""
    url = base + URL_PATH
    async with httpx.AsyncClient(timeout=1800) as client:
        idle = [await _post(client, url, short, fields) for _ in range(samples)]
        stop = asyncio.Event()
        long_latencies: list[float] = []

        async def keep_sending() -> None:
            while not stop.is_set():
                long_latencies.append(await _post(client, url, long, fields))

        senders = [asyncio.create_task(keep_sending()) for _ in range(clients)]
        while await _inflight(client, base) < clients:  # every sender has a request in the service
            await asyncio.sleep(0.05)
        loaded = [await _post(client, url, short, fields) for _ in range(samples)]
        stop.set()
        await asyncio.gather(*senders)
    idle_p50, loaded_p50 = statistics.median(idle), statistics.median(loaded)
    return {"short_seconds": round(short.seconds, 2), "long_seconds": round(long.seconds, 2), "clients": clients,
            "idle_p50": idle_p50, "loaded_p50": loaded_p50, "ratio": loaded_p50 / idle_p50,
            "long_p50": statistics.median(long_latencies) if long_latencies else None}


async def time_to_first_delta(base: str, clip: Clip, fields: dict[str, str], repeats: int = 3) -> dict:
    """Median seconds from sending `clip` with stream=true to its first text delta, and to the done event."""
    firsts, totals = [], []
    async with httpx.AsyncClient(timeout=1800) as client:
        for _ in range(repeats):
            started, first = time.perf_counter(), None
            async with client.stream("POST", base + URL_PATH, data={**fields, "stream": "true"},
                                     files={"file": (f"{clip.name}.wav", clip.wav(), "audio/wav")}) as answer:
                async for line in answer.aiter_lines():
                    is_delta = line.startswith("data: ") and '"transcript.text.delta"' in line
                    if first is None and is_delta and json.loads(line[6:])["type"] == "transcript.text.delta":
                        first = time.perf_counter() - started
            totals.append(time.perf_counter() - started)
            firsts.append(first if first is not None else totals[-1])
    return {"first_delta_p50": statistics.median(firsts), "done_p50": statistics.median(totals)}


def bare_prefill_and_step(recognizer, clip: Clip, language: str = "en", repeats: int = 3) -> dict:
    """The model's own cost for one segment alone: median prefill (join) and median decode step seconds."""
    prefills, steps = [], []
    item = RecognitionItem(clip.samples, language=language)
    for _ in range(repeats):
        session = recognizer.open_session(1)
        started = time.perf_counter()
        session.join([(0, item)])
        prefills.append(time.perf_counter() - started)
        for _ in range(5):
            if not session.running:
                break
            started = time.perf_counter()
            session.step()
            steps.append(time.perf_counter() - started)
        session.reset()
    return {"prefill": statistics.median(prefills), "step": statistics.median(steps) if steps else 0.0}
