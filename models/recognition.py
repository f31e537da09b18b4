"""The model boundary: what every recognizer and quality scorer takes and returns.

The service (app/) talks to models only through these types. A recognizer takes a list of items and
returns a list of results of the same length and order; one call is one batch, and one batch may mix
base-path and robust-path items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16_000  # every waveform crossing this boundary is mono float32 at 16 kHz


@dataclass(frozen=True)
class RecognitionItem:
    """One waveform to transcribe and how."""

    audio: np.ndarray  # [samples] float32, mono, 16 kHz, roughly in [-1, 1]
    robust: bool = False  # route gate: True = robust path (Mega-ASR LoRA / the demo's robust model)
    language: str | None = None  # ISO 639-1 code ("en"); None = let the model detect it
    context: str = ""  # free-text context / hotwords (Qwen3-ASR system turn, Whisper prompt)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class TimedText:
    """A span of text with times in seconds relative to the start of its item."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Recognition:
    """The result for one item."""

    text: str  # "" when the model found no speech
    language: str | None  # ISO 639-1 code when known, else None
    num_tokens: int  # generated tokens (before text post-processing)
    segments: tuple[TimedText, ...] = field(default=())  # finer timestamps when the model gives them
    # What the decoder itself says about how sure it was; the service's hallucination guards read these.
    # Mean natural-log probability of the generated tokens including the end token (openai/whisper's
    # avg_logprob: sum / (tokens + 1)), under the distribution the decoder picked from (after its suppression
    # rules); None when the model did not report it.
    avg_logprob: float | None = None
    # P(no speech) from the model's own no-speech signal (Whisper: P(<|nospeech|>) after
    # <|startoftranscript|>); None for models without one (Qwen3-ASR answers `language None` instead).
    no_speech_prob: float | None = None


@runtime_checkable
class Recognizer(Protocol):
    """A batched speech recognizer with a base and a robust path."""

    def languages(self, robust: bool) -> frozenset[str] | None:
        """ISO codes the given path can transcribe; None means any language it knows."""
        ...

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Transcribe a batch; the result has the same length and order as `items`."""
        ...


@runtime_checkable
class QualityScorer(Protocol):
    """The audio-quality router: P(degraded) per waveform."""

    def score(self, waveforms: Sequence[np.ndarray]) -> list[float]:
        """Score a batch of 16 kHz mono waveforms; same length and order as the input."""
        ...
