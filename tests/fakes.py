"""Fakes passed into the service in tests: a recognizer and a router whose behaviour is scripted."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
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


class ScriptedAdapter:
    """Row-gated stand-in for the Mega-ASR adapter: while its context is open, the rows marked robust
    'say' a scripted token sequence (forced through the LM head); other rows are untouched."""

    def __init__(self, model, script: list[int]) -> None:
        self.script = script
        self.calls: list[list[bool]] = []
        self._gates = None  # torch.Tensor [B] bool while a batch runs
        self._step = 0
        model.lm_head.register_forward_hook(self._force_script)

    @contextlib.contextmanager
    def rows(self, robust: Sequence[bool]) -> Iterator[None]:
        import torch

        self.calls.append(list(robust))
        self._gates, self._step = torch.tensor(list(robust), dtype=torch.bool), 0
        try:
            yield
        finally:
            self._gates = None

    def _force_script(self, module, args, logits):  # logits [B, T, V]
        if self._gates is None:
            return None
        token = self.script[min(self._step, len(self.script) - 1)]
        self._step += 1
        forced = logits.clone()
        forced[self._gates, -1, :] = -1e4
        forced[self._gates, -1, token] = 1e4
        return forced


def answer_script(tokenizer) -> list[int]:
    """What the scripted robust rows say: 19 tokens, then the end token."""
    return tokenizer.encode("language English<asr_text>hi") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def assert_same_answers(left: Sequence[Recognition], right: Sequence[Recognition]) -> None:
    """Same decoded answers; the decoder's confidence equal up to float rounding (another batch shape or a
    merged weight sums in another order)."""
    import pytest

    assert [(r.text, r.language, r.num_tokens, r.segments) for r in left] == \
        [(r.text, r.language, r.num_tokens, r.segments) for r in right]
    assert [r.avg_logprob for r in left] == pytest.approx([r.avg_logprob for r in right], abs=1e-4)
    assert [r.no_speech_prob for r in left] == pytest.approx([r.no_speech_prob for r in right], abs=1e-4)
