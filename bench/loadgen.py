"""An async load generator: `concurrency` clients send requests from a clip list, bounded in count."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import httpx

from bench.clips import Clip


@dataclass
class LoadResult:
    concurrency: int
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> dict:
        ok = self.statuses.get(200, 0)
        lat = sorted(self.latencies)
        pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan"))
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": ok,
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "requests_per_second": ok / self.wall_seconds if self.wall_seconds else 0.0,
                "audio_seconds_per_second": self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0,
                "real_time_factor": self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan"),
                "latency_p50": pick(0.50), "latency_p95": pick(0.95), "latency_p99": pick(0.99)}


async def run_load(url: str, clips: list[Clip], concurrency: int, total: int, fields: dict[str, str],
                   timeout: float = 900.0) -> LoadResult:
    """Send `total` requests (clips in round robin) from `concurrency` concurrent clients."""
    result = LoadResult(concurrency)
    payloads = [(clip, clip.wav()) for clip in clips]
    order = itertools.islice(itertools.cycle(payloads), total)
    lock = asyncio.Lock()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def worker() -> None:
            while True:
                async with lock:
                    item = next(order, None)
                if item is None:
                    return
                clip, data = item
                started = time.perf_counter()
                answer = await client.post(url, files={"file": (f"{clip.name}.wav", data, "audio/wav")},
                                           data=fields)
                elapsed = time.perf_counter() - started
                result.statuses[answer.status_code] = result.statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    result.latencies.append(elapsed)
                    result.audio_seconds += clip.seconds
                    result.texts[clip.name] = answer.json().get("text", "")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_seconds = time.perf_counter() - started
    return result
