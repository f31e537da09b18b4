"""The model boundary: what every recognizer and quality scorer takes and returns.

The service (app/) talks to models only through these types. A recognizer takes a list of items and
returns a list of results of the same length and order; one call is one batch, and one batch may mix
base-path and robust-path items.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16_000  # every waveform crossing this boundary is mono float32 at 16 kHz


@dataclass(frozen=True)
class RecognitionItem:
    """One waveform to transcribe and how."""

    audio: np.ndarray  # [samples] float32, mono, 16 kHz, roughly in [-1, 1]
    robust: bool = False  # route gate: True = robust path (Mega-ASR LoRA / the demo's robust model)
    language: str | None = None  # ISO 639-1 code ("en"); None = let the model detect it
    context: str = ""  # free-text context / hotwords (Qwen3-ASR system turn, Whisper prompt)
    # Word times will be asked for this item's text: the recognizer keeps what its aligner needs (Whisper: the
    # encoder output, so alignment needs no second encoder pass) in Recognition.alignment_state.
    words: bool = False

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
    # avg_logprob: sum / (tokens + 1)), under the scores greedy decoding picked from (after the decoder's
    # suppression rules, as openai computes it); None when the model did not report it.
    avg_logprob: float | None = None
    # P(no speech) from the model's own no-speech signal (Whisper: P(<|nospeech|>) after
    # <|startoftranscript|>); None for models without one (Qwen3-ASR answers `language None` instead).
    no_speech_prob: float | None = None
    # The generated text tokens (no special or timestamp tokens) that decode to `text`, for alignment.
    tokens: tuple[int, ...] = ()
    # What the recognizer kept for its aligner when the item asked for words (opaque; None otherwise).
    alignment_state: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Word:
    """One word of a text with its times in seconds (relative to the start of its item, or of the file once
    the service has placed it) and, where the model gives one, how sure it was of the word (0..1)."""

    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass(frozen=True)
class AlignmentItem:
    """A finished segment whose words are to be timed: its audio, its final text and how it was recognized."""

    audio: np.ndarray  # [samples] float32, mono, 16 kHz: the same waveform the recognizer heard
    text: str  # the text to time (after the service's guards)
    language: str | None  # ISO code of the text, when known
    robust: bool = False  # the route it was recognized on (the demo aligns on the model that decoded it)
    tokens: tuple[int, ...] = ()  # the recognizer's tokens for exactly `text`; () = tokenize `text`
    state: Any = field(default=None, repr=False, compare=False)  # Recognition.alignment_state, if any


@runtime_checkable
class Aligner(Protocol):
    """Word times for finished segments: one call aligns a batch; the result has the same length and order.

    Each result lists the words of its item's text in order (punctuation-only pieces are not words), times
    relative to the item's start, start <= end, never decreasing from word to word.
    """

    def languages(self, robust: bool) -> frozenset[str] | None:
        """ISO codes whose text the aligner can time on the given path; None means any."""
        ...

    def align(self, items: Sequence[AlignmentItem]) -> list[tuple[Word, ...]]:
        """Time the words of each item's text."""
        ...


@dataclass(frozen=True)
class RowUpdate:
    """News about one row of a decode session."""

    key: Hashable  # the caller's key for the row
    delta: str = ""  # text decoded since this row's previous update (for streaming; the result is final)
    tokens: int = 0  # tokens generated since this row's previous update
    result: Recognition | None = None  # set once: the row finished and has left the running set


@runtime_checkable
class DecodeSession(Protocol):
    """A running set of rows decoded one token at a time; rows join and leave between steps.

    join() prefills new rows (audio encoder + prompt) and gives their first token; step() decodes one token
    for every running row. A row leaves the moment it ends (end token or budget) and its update carries the
    result. A row's output does not depend on which other rows run beside it.
    """

    @property
    def running(self) -> int:
        """Rows decoding now."""
        ...

    def row_bytes(self) -> int:
        """Cache memory one row may take at most (longest segment, full token budget): for admission."""
        ...

    def join(self, rows: Sequence[tuple[Hashable, RecognitionItem]]) -> list[RowUpdate]:
        """Prefill new rows; they run from the next step. All-or-nothing: on an exception no row joined."""
        ...

    def step(self) -> list[RowUpdate]:
        """One decode step for every running row. After an exception, call reset()."""
        ...

    def cancel(self, keys: Iterable[Hashable]) -> None:
        """Drop running rows (their memory is reused); unknown keys are ignored."""
        ...

    def reset(self) -> None:
        """Drop every running row."""
        ...


@runtime_checkable
class PreparesAhead(Protocol):
    """A DecodeSession whose joins can start ahead (optional: the engine checks `prepares_ahead`).

    prepare() does the part of a join that reads nothing of the session (an audio encoder) and may run on
    another thread while step() runs, even on two threads at once; join(rows, prepared) then finishes the
    join with prepare()'s results for those rows, in order. A row's output is the same either way.
    """

    @property
    def prepares_ahead(self) -> bool: ...

    def prepare(self, items: Sequence[RecognitionItem]) -> list[Any]:
        """Per item, its prepared state (same length and order)."""
        ...

    def join(self, rows: Sequence[tuple[Hashable, RecognitionItem]],
             prepared: Sequence[Any] | None = None) -> list[RowUpdate]: ...


@runtime_checkable
class Recognizer(Protocol):
    """A batched speech recognizer with a base and a robust path."""

    def languages(self, robust: bool) -> frozenset[str] | None:
        """ISO codes the given path can transcribe; None means any language it knows."""
        ...

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Transcribe a batch; the result has the same length and order as `items`."""
        ...


def open_session(recognizer: Recognizer, max_rows: int) -> DecodeSession:
    """The recognizer's own decode session, or, for one that only decodes whole batches, a session whose
    rows all finish when they join (one recognize() call per join)."""
    opener = getattr(recognizer, "open_session", None)
    return opener(max_rows) if opener is not None else WholeBatchSession(recognizer)


class WholeBatchSession:
    """DecodeSession over recognize(): every join is one batch, decoded to the end at once."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer

    @property
    def running(self) -> int:
        return 0

    def row_bytes(self) -> int:
        return 0

    def join(self, rows: Sequence[tuple[Hashable, RecognitionItem]]) -> list[RowUpdate]:
        results = self.recognizer.recognize([item for _, item in rows])
        if len(results) != len(rows):
            raise RuntimeError(f"recognizer returned {len(results)} results for {len(rows)} items")
        return [RowUpdate(key, delta=result.text, tokens=result.num_tokens, result=result)
                for (key, _), result in zip(rows, results)]

    def step(self) -> list[RowUpdate]:
        return []

    def cancel(self, keys: Iterable[Hashable]) -> None:
        return None

    def reset(self) -> None:
        return None


@runtime_checkable
class QualityScorer(Protocol):
    """The audio-quality router: P(degraded) per waveform."""

    def score(self, waveforms: Sequence[np.ndarray]) -> list[float]:
        """Score a batch of 16 kHz mono waveforms; same length and order as the input."""
        ...
