"""Fakes passed into the service in tests: a recognizer and a router whose behaviour is scripted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.recognition import AlignmentItem, Recognition, RecognitionItem, RowUpdate, Word


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


@dataclass
class ScriptedRecognizer:
    """Answers each clip with the Recognition scripted for its level: answers[round(10 * peak amplitude)]."""

    answers: dict[int, Recognition]
    languages_base: frozenset[str] | None = None
    languages_robust: frozenset[str] | None = None
    batches: list[list[RecognitionItem]] = field(default_factory=list)

    def languages(self, robust: bool) -> frozenset[str] | None:
        return self.languages_robust if robust else self.languages_base

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        self.batches.append(list(items))
        return [self.answers[round(10 * tone_level(item.audio))] for item in items]


@dataclass
class SteppingRecognizer:
    """A recognizer with a real decode session shape: each row 'decodes' its text '<route> <seconds>s' and
    one dot per second of audio, one character per step, so longer clips take more steps. Scripted faults.

    `gate`, when set, blocks every step until the test releases it; `pace`, when set, takes one permit per
    step (the test releases steps one by one); `fail_step(running_keys)` may return an exception to raise
    for a step; `fail_join(items)` likewise for a join.

    `prepares_ahead`: the session prepares rows ahead (models.recognition.PreparesAhead): `prepare` records
    the thread it ran on, waits for `prepare_gate` when set, may fail by `fail_prepare(items)`, and gives
    "ready:<text>" per item; `prepared` records what every join was given (None: joined inline).
    """

    languages_base: frozenset[str] | None = frozenset({"en"})
    languages_robust: frozenset[str] | None = None
    gate: threading.Event | None = None
    pace: threading.Semaphore | None = None
    fail_step: Callable[[list], Exception | None] | None = None
    fail_join: Callable[[Sequence[RecognitionItem]], Exception | None] | None = None
    row_bytes_each: int = 0
    prepares_ahead: bool = False
    prepare_gate: threading.Event | None = None
    fail_prepare: Callable[[Sequence[RecognitionItem]], Exception | None] | None = None
    prepared_on: list[str] = field(default_factory=list)  # thread name of every prepare call
    prepare_order: list[float] = field(default_factory=list)  # the first item's seconds of every prepare call
    prepared: list[list | None] = field(default_factory=list)
    joins: list[list[RecognitionItem]] = field(default_factory=list)
    steps: list[list] = field(default_factory=list)  # the running keys of every step
    cancelled: list = field(default_factory=list)

    def languages(self, robust: bool) -> frozenset[str] | None:
        return self.languages_robust if robust else self.languages_base

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        return [Recognition(text=fake_text(item), language=item.language or "en", num_tokens=len(fake_text(item)))
                for item in items]

    def open_session(self, max_rows: int) -> FakeSession:
        return FakeSession(self, max_rows)


def fake_text(item: RecognitionItem) -> str:
    return f"{'robust' if item.robust else 'base'} {item.duration:.1f}s" + "." * int(item.duration)


class FakeSession:
    def __init__(self, owner: SteppingRecognizer, max_rows: int) -> None:
        self.owner = owner
        self.max_rows = max_rows
        self.rows: dict = {}  # key -> [item, characters emitted]

    @property
    def running(self) -> int:
        return len(self.rows)

    def row_bytes(self) -> int:
        return self.owner.row_bytes_each

    @property
    def prepares_ahead(self) -> bool:
        return self.owner.prepares_ahead

    def prepare(self, items):
        self.owner.prepared_on.append(threading.current_thread().name)
        self.owner.prepare_order.append(round(items[0].duration, 1))
        if self.owner.prepare_gate is not None:
            assert self.owner.prepare_gate.wait(timeout=30), "test never released the prepare gate"
        if self.owner.fail_prepare is not None and (error := self.owner.fail_prepare(items)):
            raise error
        return [f"ready:{fake_text(item)}" for item in items]

    def join(self, rows, prepared=None):
        if self.owner.fail_join is not None and (error := self.owner.fail_join([item for _, item in rows])):
            raise error
        if prepared is not None:
            assert list(prepared) == [f"ready:{fake_text(item)}" for _, item in rows], "prepared for other rows"
        self.owner.prepared.append(None if prepared is None else list(prepared))
        if len(self.rows) + len(rows) > self.max_rows:
            raise RuntimeError("more rows than the session holds")
        self.owner.joins.append([item for _, item in rows])
        for key, item in rows:
            self.rows[key] = [item, 0]
        return [self._emit(key) for key, _ in rows]

    def step(self):
        if self.owner.gate is not None:
            assert self.owner.gate.wait(timeout=30), "test never released the gate"
        if self.owner.pace is not None:
            assert self.owner.pace.acquire(timeout=30), "test never released the next step"
        keys = list(self.rows)
        self.owner.steps.append(keys)
        if self.owner.fail_step is not None and (error := self.owner.fail_step(keys)):
            raise error
        return [self._emit(key) for key in keys]

    def _emit(self, key) -> RowUpdate:
        item, done = self.rows[key]
        text = fake_text(item)
        self.rows[key][1] = done + 1
        if done + 1 < len(text):
            return RowUpdate(key, delta=text[done], tokens=1)
        del self.rows[key]
        return RowUpdate(key, delta=text[done], tokens=1,
                         result=Recognition(text=text, language=item.language or "en", num_tokens=len(text)))

    def cancel(self, keys) -> None:
        for key in keys:
            if self.rows.pop(key, None) is not None:
                self.owner.cancelled.append(key)

    def reset(self) -> None:
        self.rows.clear()


class FakeAligner:
    """Times each word of the text one second apart; records every call."""

    def __init__(self, languages: frozenset[str] | None = None) -> None:
        self._languages = languages
        self.calls: list[list[AlignmentItem]] = []

    def languages(self, robust: bool) -> frozenset[str] | None:
        return self._languages

    def align(self, items: Sequence[AlignmentItem]) -> list[tuple[Word, ...]]:
        self.calls.append(list(items))
        return [tuple(Word(w.strip("."), i, i + 0.5, 0.9) for i, w in enumerate(item.text.split())) for item in items]
