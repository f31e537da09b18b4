"""Cutting long audio: segments ≤ 30 s, contiguous, covering the input once, cut inside pauses."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from app.audio.decoding import decode_audio
from app.audio.segmenter import split_for_recognition

RATE = 16_000
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audio"


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    syllables = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 4 * t))
    return (0.2 * syllables * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def assert_covering(segments, total_samples: int, limit: float = 30.0) -> None:
    assert segments[0].start == 0.0
    assert sum(len(s.samples) for s in segments) == total_samples
    for left, right in itertools.pairwise(segments):
        assert left.end == right.start
    assert all(s.end - s.start <= limit + 1e-9 for s in segments)


@pytest.mark.parametrize("use_vad", [False, True])
def test_cuts_fall_inside_pauses(use_vad):
    pauses = []
    parts, cursor = [], 0
    for i, seconds in enumerate([12, 9, 14, 11, 13, 8, 10, 12]):
        parts.append(speechlike(seconds, i))
        cursor += seconds * RATE
        parts.append(np.zeros(int(0.6 * RATE), np.float32))
        pauses.append((cursor, cursor + int(0.6 * RATE)))
        cursor += int(0.6 * RATE)
    audio = np.concatenate(parts)
    segments = split_for_recognition(audio, use_vad=use_vad)
    assert_covering(segments, len(audio))
    assert len(segments) >= 4
    for segment in segments[1:]:
        cut = round(segment.start * RATE)
        assert any(a <= cut <= b for a, b in pauses), f"cut at {segment.start:.2f}s is not in a pause"


def test_no_pause_still_splits_at_the_limit():
    audio = (0.1 * np.random.default_rng(0).standard_normal(75 * RATE)).astype(np.float32)
    segments = split_for_recognition(audio, use_vad=False)
    assert_covering(segments, len(audio))
    assert len(segments) == 3


def test_short_audio_is_one_segment():
    audio = speechlike(29.9, 0)
    segments = split_for_recognition(audio)
    assert len(segments) == 1 and segments[0].samples is not None and segments[0].end == pytest.approx(29.9)


def test_real_speech_joined_with_pauses_is_cut_in_the_pauses():
    names = ["sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0890.wav",
             "goforward.wav", "005.wav", "sense_and_sensibility_01_austen_64kb-0880.wav"]
    clips = [decode_audio((FIXTURES / "human" / n).read_bytes(), max_seconds=60).samples for n in names]
    parts, pauses, cursor = [], [], 0
    for _ in range(3):
        for clip in clips:
            parts.append(clip)
            cursor += len(clip)
            parts.append(np.zeros(int(0.8 * RATE), np.float32))
            pauses.append((cursor, cursor + int(0.8 * RATE)))
            cursor += int(0.8 * RATE)
    audio = np.concatenate(parts)
    assert len(audio) > 60 * RATE
    segments = split_for_recognition(audio, use_vad=True)
    assert_covering(segments, len(audio))
    for segment in segments[1:]:
        cut = round(segment.start * RATE)
        assert any(a <= cut <= b for a, b in pauses), f"cut at {segment.start:.2f}s is inside speech"
