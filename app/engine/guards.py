"""Hallucination guards: what the service does with a recognizer's text before a client sees it.

Pure functions over what the model reported (text, avg_logprob, no_speech_prob) and what the service knows
(the language the text must be in), the same for every recognizer. Checks run in this order; a blanked
text stops the chain:

| reason | test | action |
| --- | --- | --- |
| `no_speech` | no_speech_prob > 0.6 and avg_logprob < -1.0 (openai/whisper's rule) | blank |
| `no_words` | not one letter or digit (".", "♪", "ʻ‿ʻ") | blank |
| `script` | under half of the text's words in a script of the expected language | blank |
| `repetition` | a unit of <= 50 characters repeated >= 10 times back to back | cut to one unit and flag; blank when the loop is all there is |
| `compression_ratio` | gzip compression ratio > 2.4 (openai/whisper's test), after truncation | blank |
| `low_logprob` | avg_logprob < -1.0 | keep, flag |

Why blank or keep: a blanked text is one no listener could have heard (the model says there was no speech,
or the text cannot be a transcript at all); `low_logprob` keeps its text because real speech in noise or
reverberation decodes at low confidence too, and dropping it would lose words: the flag lets a client that
stores transcripts decide.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from app.engine.scripts import share_in_scripts, word_characters

if TYPE_CHECKING:
    from app.settings import Settings

GuardReason = Literal["no_speech", "no_words", "script", "repetition", "compression_ratio", "low_logprob"]
GuardAction = Literal["blank", "truncate", "flag"]
# A loop with less than this beside it is all there is ("AHHHH...", "고기, 고기, ..."): nothing to keep.
_MIN_WORD_CHARACTERS_BESIDE_A_LOOP = 2


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    repetition_min_repeats: int = 10
    repetition_max_unit_chars: int = 50
    min_script_share: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardConfig:
        return cls(enabled=settings.guards, no_speech_threshold=settings.guard_no_speech_threshold,
                   logprob_threshold=settings.guard_logprob_threshold,
                   compression_ratio_threshold=settings.guard_compression_ratio_threshold,
                   repetition_min_repeats=settings.guard_repetition_min_repeats,
                   min_script_share=settings.guard_min_script_share)


@dataclass(frozen=True)
class GuardEvent:
    reason: GuardReason
    action: GuardAction


@dataclass(frozen=True)
class Guarded:
    """The text a client gets, and what the guards did to get it."""

    text: str
    events: tuple[GuardEvent, ...] = ()

    @property
    def blanked(self) -> bool:
        return any(event.action == "blank" for event in self.events)

    @property
    def flags(self) -> tuple[str, ...]:
        """Reasons whose text was kept (flagged or truncated): what the response lists under `flags`."""
        return tuple(event.reason for event in self.events if event.action != "blank")


@dataclass(frozen=True)
class Loop:
    """A stretch [start, end) of a text that is one unit repeated back to back."""

    start: int
    end: int
    unit: str

    @property
    def repeats(self) -> float:
        return (self.end - self.start) / len(self.unit)


def compression_ratio(text: str) -> float:
    """openai/whisper's: UTF-8 bytes / zlib-compressed bytes (high for repetitive text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def find_loop(text: str, min_repeats: int = 10, max_unit_chars: int = 50) -> Loop | None:
    """The longest stretch made of one unit (1..max_unit_chars characters, compared case-insensitively)
    repeated at least `min_repeats` times back to back; None if there is none. Cheap enough to run on a
    partial text while it is being decoded."""
    codes = np.frombuffer(text.lower().encode("utf-32-le"), dtype=np.uint32)
    best: Loop | None = None
    best_span = 0
    for period in range(1, min(max_unit_chars, len(codes) // min_repeats) + 1):
        same = np.concatenate([[False], codes[period:] == codes[:-period], [False]])
        edges = np.flatnonzero(same[1:] != same[:-1])  # [start0, end0, start1, end1, ...] of runs of matches
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):
            span = end - start + period  # the run plus the unit it repeats; ties keep the shorter unit
            if span >= min_repeats * period and span > best_span:
                first = _word_start(text, start, period)
                best, best_span = Loop(start=first, end=start + span, unit=text[first:first + period]), span
    return best


def _word_start(text: str, start: int, period: int) -> int:
    """The first position in the loop's first unit where a word starts (so the unit kept is "Thank you. ",
    not " Thank you."); `start` when none does (scripts written without spaces)."""
    for position in range(start, start + period):
        if position == 0 or text[position - 1].isspace():
            return position
    return start


def check(text: str, *, avg_logprob: float | None, no_speech_prob: float | None, language: str | None,
          config: GuardConfig) -> Guarded:
    """Apply the guards to one recognized segment. `language`: the language the text must be in (the request's,
    or the path's only one), None when any is possible."""
    text = text.strip()
    if not config.enabled or not text:
        return Guarded(text)
    blank = _blank_reason(text, avg_logprob, no_speech_prob, language, config)
    if blank is not None:
        return Guarded("", (GuardEvent(blank, "blank"),))
    events: list[GuardEvent] = []
    loop = find_loop(text, config.repetition_min_repeats, config.repetition_max_unit_chars)
    if loop is not None:
        if word_characters(text[:loop.start] + text[loop.end:]) < _MIN_WORD_CHARACTERS_BESIDE_A_LOOP:
            return Guarded("", (GuardEvent("repetition", "blank"),))
        text = _without_loop(text, loop)
        events.append(GuardEvent("repetition", "truncate"))
    if compression_ratio(text) > config.compression_ratio_threshold:
        return Guarded("", (*events, GuardEvent("compression_ratio", "blank")))
    if avg_logprob is not None and avg_logprob < config.logprob_threshold:
        events.append(GuardEvent("low_logprob", "flag"))
    return Guarded(text, tuple(events))


def _blank_reason(text: str, avg_logprob: float | None, no_speech_prob: float | None, language: str | None,
                  config: GuardConfig) -> GuardReason | None:
    if (no_speech_prob is not None and avg_logprob is not None and no_speech_prob > config.no_speech_threshold
            and avg_logprob < config.logprob_threshold):
        return "no_speech"
    if word_characters(text) == 0:
        return "no_words"
    share = share_in_scripts(text, language) if language else None
    if share is not None and share < config.min_script_share:
        return "script"
    return None


def _without_loop(text: str, loop: Loop) -> str:
    """The text with the loop cut to its first unit (spaces tidied where the cut was)."""
    kept = text[:loop.start] + loop.unit + text[loop.end:]
    return re.sub(r"\s+", " ", kept).strip()
