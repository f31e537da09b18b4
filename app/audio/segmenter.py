"""Cutting long audio into segments of at most 30 s, at pauses, covering the input exactly once.

Candidate cuts are the centres of pauses: gaps between speech found by silero-vad (app/audio/vad.py) and runs
of low energy. Within each window the longest pause wins (later on ties); with
no pause, the quietest 20 ms frame of the window's last third. Segments are contiguous and their
lengths add up to the input, so no word is lost or transcribed twice at a cut.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

RATE = 16_000


@dataclass(frozen=True)
class SegmenterConfig:
    max_segment_seconds: float = 30.0
    min_cut_fraction: float = 0.5  # cuts are searched in [start + 0.5*max, start + max]
    frame_ms: float = 20.0
    min_pause_seconds: float = 0.15
    use_vad: bool = True


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    samples: np.ndarray  # [n] float32


def split_for_recognition(samples: np.ndarray, *, max_segment_seconds: float = 30.0,
                          use_vad: bool = True) -> list[Segment]:
    config = SegmenterConfig(max_segment_seconds=max_segment_seconds, use_vad=use_vad)
    bounds = cut_points(samples, config)
    return [Segment(a / RATE, b / RATE, samples[a:b]) for a, b in itertools.pairwise(bounds)]


def cut_points(samples: np.ndarray, config: SegmenterConfig) -> list[int]:
    """Sample indices [0, c1, ..., len] of the cuts."""
    total = len(samples)
    limit = int(config.max_segment_seconds * RATE)
    if total <= limit:
        return [0, total]
    pauses = _pauses(samples, config)  # [(start, end)] in samples
    frame = int(config.frame_ms * RATE / 1000)
    bounds = [0]
    while total - bounds[-1] > limit:
        start = bounds[-1]
        low, high = start + int(limit * config.min_cut_fraction), start + limit
        bounds.append(_best_cut(samples, pauses, low, high, frame))
    bounds.append(total)
    return bounds


def _best_cut(samples: np.ndarray, pauses: list[tuple[int, int]], low: int, high: int, frame: int) -> int:
    best: tuple[int, int] | None = None  # (pause length inside the window, centre)
    for a, b in pauses:
        a, b = max(a, low), min(b, high)
        if b - a <= 0:
            continue
        candidate = (b - a, (a + b) // 2)
        if best is None or candidate >= best:
            best = candidate
    if best is not None:
        return best[1]
    return _quietest_frame(samples, low + (high - low) * 2 // 3, high, frame)


def _quietest_frame(samples: np.ndarray, low: int, high: int, frame: int) -> int:
    n = max(1, (high - low) // frame)
    frames = samples[low:low + n * frame].reshape(n, -1)
    energy = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return low + int(np.argmin(energy)) * frame + frame // 2


def _pauses(samples: np.ndarray, config: SegmenterConfig) -> list[tuple[int, int]]:
    pauses = _energy_pauses(samples, config)
    if config.use_vad:
        pauses += _vad_gaps(samples, config)
    return pauses


def _energy_pauses(samples: np.ndarray, config: SegmenterConfig) -> list[tuple[int, int]]:
    frame = int(config.frame_ms * RATE / 1000)
    n = len(samples) // frame
    if n == 0:
        return []
    power = np.mean(np.square(samples[:n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-10))
    threshold = min(np.percentile(db, 50) - 15.0, np.percentile(db, 10) + 10.0)
    quiet = db < threshold
    return [(a * frame, b * frame) for a, b in _runs(quiet)
            if (b - a) * frame >= config.min_pause_seconds * RATE]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _vad_gaps(samples: np.ndarray, config: SegmenterConfig) -> list[tuple[int, int]]:
    """Gaps between silero-vad speech regions."""
    from app.audio.vad import speech_timestamps

    speech = speech_timestamps(samples)
    gaps = [(left["end"], right["start"]) for left, right in itertools.pairwise(speech)]
    return [(a, b) for a, b in gaps if b - a >= config.min_pause_seconds * RATE]
