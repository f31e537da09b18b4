"""In-process baselines measured in the same run as the service.

- sequential: one file at a time, route the whole file, then decode its segments one by one on that
  path (how upstream `MegaASR.infer` serves); `toggle` is called when the route changes (the Qwen3-ASR
  profile passes an in-place LoRA merge/unmerge, as upstream does).
- ideal: the recognizer on full batches of pre-decoded, pre-segmented, pre-routed audio: no HTTP,
  queue or decoding. The ceiling of this hardware for this model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.audio.segmenter import split_for_recognition
from app.engine.pipeline import Pipeline
from bench.clips import Clip
from models.recognition import RecognitionItem


@dataclass
class BaselineResult:
    name: str
    wall_seconds: float
    audio_seconds: float
    files: int
    router_seconds: float = 0.0
    texts: dict[str, str] | None = None

    def summary(self) -> dict:
        return {"name": self.name, "files": self.files, "wall_seconds": self.wall_seconds,
                "requests_per_second": self.files / self.wall_seconds,
                "audio_seconds_per_second": self.audio_seconds / self.wall_seconds,
                "real_time_factor": self.wall_seconds / self.audio_seconds,
                "router_seconds": self.router_seconds,
                "router_share": self.router_seconds / self.wall_seconds}


def sequential(pipeline: Pipeline, clips: list[Clip], threshold: float = 0.5,
               toggle: Callable[[bool], None] | None = None) -> BaselineResult:
    texts: dict[str, str] = {}
    router = 0.0
    current: bool | None = None
    started = time.perf_counter()
    for clip in clips:
        t0 = time.perf_counter()
        robust = pipeline.score([clip.samples])[0] >= threshold
        router += time.perf_counter() - t0
        if toggle is not None and robust != current:
            toggle(robust)
        current = robust
        parts = []
        for segment in split_for_recognition(clip.samples):
            item = RecognitionItem(audio=segment.samples, robust=robust and toggle is None, language="en")
            parts.append(pipeline.recognizer.recognize([item])[0].text)
        texts[clip.name] = " ".join(parts)
    if toggle is not None and current:
        toggle(False)
    wall = time.perf_counter() - started
    return BaselineResult("sequential", wall, sum(c.seconds for c in clips), len(clips), router, texts)


def ideal(pipeline: Pipeline, clips: list[Clip], max_batch: int, threshold: float = 0.5) -> BaselineResult:
    segments = [s.samples for clip in clips for s in split_for_recognition(clip.samples)]
    scores = pipeline.score(segments)  # routing decided up front; timed separately below
    items = [RecognitionItem(audio=s, robust=score >= threshold, language="en")
             for s, score in zip(segments, scores)]
    items.sort(key=lambda item: len(item.audio))  # the best case for padding
    started = time.perf_counter()
    router_started = time.perf_counter()
    for start in range(0, len(segments), max_batch):
        pipeline.score(segments[start:start + max_batch])
    router = time.perf_counter() - router_started
    for start in range(0, len(items), max_batch):
        pipeline.recognizer.recognize(items[start:start + max_batch])
    wall = time.perf_counter() - started
    return BaselineResult("ideal", wall, sum(c.seconds for c in clips), len(clips), router)


def bare_call_seconds(pipeline: Pipeline, clip: Clip, threshold: float = 0.5, repeats: int = 3) -> float:
    """Median time of the bare model call (router + recognizer) on one clip: the c=1 latency floor."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        robust = pipeline.score([clip.samples])[0] >= threshold
        items = [RecognitionItem(audio=s.samples, robust=robust, language="en")
                 for s in split_for_recognition(clip.samples)]
        pipeline.recognizer.recognize(items)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
