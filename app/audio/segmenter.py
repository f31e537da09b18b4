"""Cutting long audio into segments of at most 30 s, at pauses, covering the input exactly once.

Windowed, so a recording of any length is cut with bounded memory and the same way whether it arrives as
one array (a synchronous request) or block after block (a job decoding its stored upload): every cut is
decided from the next `max_segment_seconds` of audio after the previous cut alone. Candidate cuts are the
centres of pauses in the window's second half: gaps between speech found by silero-vad (app/audio/vad.py)
and runs of low energy (threshold from the window's own levels). The longest pause wins (later on ties);
with no pause, the quietest 20 ms frame of the window's last third. Segments are contiguous and their
lengths add up to the input, so no word is lost or transcribed twice at a cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
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
    return list(iter_segments([samples], config))


def iter_segments(blocks: Iterable[np.ndarray], config: SegmenterConfig, start_sample: int = 0) -> Iterator[Segment]:
    """Segments of the audio that `blocks` ([n] float32 each) carry, in order, as soon as each is cut.

    `start_sample` is where the first block starts in the file (times are from the start of the file). At
    most one window (+ one block) is held: memory does not grow with the recording's length.
    """
    limit = int(config.max_segment_seconds * RATE)
    buffer = np.zeros(0, np.float32)
    start = start_sample
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if len(buffer) else block
        while len(buffer) > limit:  # more than one window left: the cut falls inside the next window
            cut = window_cut(buffer[:limit], config)
            yield Segment(start / RATE, (start + cut) / RATE, buffer[:cut])
            buffer, start = buffer[cut:], start + cut
    if len(buffer):
        yield Segment(start / RATE, (start + len(buffer)) / RATE, buffer)


def cut_points(samples: np.ndarray, config: SegmenterConfig) -> list[int]:
    """Sample indices [0, c1, ..., len] of the cuts."""
    bounds = [0]
    for segment in iter_segments([samples], config):
        bounds.append(bounds[-1] + len(segment.samples))
    return bounds if len(bounds) > 1 else [0, 0]


def window_cut(window: np.ndarray, config: SegmenterConfig) -> int:
    """Where to cut a window of exactly max_segment_seconds: an index in its second half."""
    limit = len(window)
    low = int(limit * config.min_cut_fraction)
    frame = int(config.frame_ms * RATE / 1000)
    pauses = _energy_pauses(window, config)
    if config.use_vad:  # only the search range can hold the cut: the VAD looks there alone
        pauses += [(low + a, low + b) for a, b in _vad_gaps(window[low:], config)]
    return _best_cut(window, pauses, low, limit, frame)


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
    from app.audio.decoding import is_silent
    from app.audio.vad import speech_timestamps

    if is_silent(samples):  # digital silence holds no speech, so no gap between speech either
        return []
    speech = speech_timestamps(samples)
    gaps = [(left["end"], right["start"]) for left, right in itertools.pairwise(speech)]
    return [(a, b) for a, b in gaps if b - a >= config.min_pause_seconds * RATE]
