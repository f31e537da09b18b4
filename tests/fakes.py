"""Fakes passed into the service in tests: a recognizer and a router whose behaviour is scripted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.recognition import Recognition, RecognitionItem


def tone_level(audio: np.ndarray) -> float:
    """Peak amplitude: tests encode the 'degradation' of a clip in its loudness."""
    return float(np.max(np.abs(audio))) if len(audio) else 0.0


@dataclass
class FakeRouter:
    """P(degraded) = the clip's peak amplitude (so a test picks a route by picking a loudness)."""

    calls: list[int] = field(default_factory=list)

    def score(self, waveforms: Sequence[np.ndarray]) -> list[float]:
        self.calls.append(len(waveforms))
        return [min(1.0, tone_level(w)) for w in waveforms]


@dataclass
class FakeRecognizer:
    """Transcribes a clip as '<route> <seconds>s'; records every batch; scripted faults.

    `gate`, when set, blocks each batch until the test releases it (so tests can fill the queue
    deterministically); `fail` raises the returned exception for a batch when it returns one.
    """

    languages_base: frozenset[str] | None = frozenset({"en"})
    languages_robust: frozenset[str] | None = None
    batches: list[list[RecognitionItem]] = field(default_factory=list)
    gate: threading.Event | None = None
    fail: Callable[[Sequence[RecognitionItem]], Exception | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def languages(self, robust: bool) -> frozenset[str] | None:
        return self.languages_robust if robust else self.languages_base

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "test never released the gate"
        with self.lock:
            self.batches.append(list(items))
        if self.fail is not None:
            error = self.fail(items)
            if error is not None:
                raise error
        return [Recognition(text=f"{'robust' if item.robust else 'base'} {item.duration:.1f}s",
                            language=item.language or "en", num_tokens=3) for item in items]


def tone(seconds: float, level: float = 0.2, freq: float = 440.0, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
