"""The speech gate: which segments hold speech at all, decided before any model runs.

A segment is `silence` below -60 dBFS RMS (digital silence, room tone), `no_speech` when silero-vad finds
less than `min_speech_seconds` of speech in it, else `speech`. Only speech segments are queued for the
router and the recognizer; the others answer empty text with `no_speech: true` and cost no model time.

Speech is counted like silero's own get_speech_timestamps: a run starts at a frame with P(speech) >=
`threshold` and lasts while P(speech) stays >= `threshold - 0.15`. silero's detections fade for speech
quieter than about -55 dBFS, so a quieter segment is raised to -40 dBFS before the VAD looks at it (gain
does not change its signal-to-noise ratio, so it does not make noise look more like speech).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from app.audio.decoding import is_silent, rms_dbfs
from app.audio.vad import FRAME_SECONDS, speech_probabilities

if TYPE_CHECKING:
    from app.settings import Settings

GateOutcome = Literal["speech", "silence", "no_speech"]
_HYSTERESIS = 0.15  # silero's neg_threshold = threshold - 0.15


@dataclass(frozen=True)
class SpeechGateConfig:
    enabled: bool = True
    threshold: float = 0.5  # silero's default speech threshold
    min_speech_seconds: float = 0.25  # silero's default min_speech_duration
    silence_dbfs: float = -60.0
    lift_below_dbfs: float = -40.0  # quieter segments are raised to this level before the VAD

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeechGateConfig:
        return cls(enabled=settings.speech_gate, threshold=settings.speech_gate_threshold,
                   min_speech_seconds=settings.speech_gate_min_speech_seconds)


def speech_runs(probabilities: np.ndarray, threshold: float) -> tuple[tuple[float, float], ...]:
    """The hysteresis runs of a [frames] P(speech) track as (start, end) seconds, in order."""
    low = max(0.0, threshold - _HYSTERESIS)
    runs: list[tuple[float, float]] = []
    start: int | None = None
    for index, p in enumerate(probabilities.tolist()):
        if start is None and p >= threshold:
            start = index
        elif start is not None and p < low:
            runs.append((start * FRAME_SECONDS, index * FRAME_SECONDS))
            start = None
    if start is not None:
        runs.append((start * FRAME_SECONDS, len(probabilities) * FRAME_SECONDS))
    return tuple(runs)


def speech_seconds(probabilities: np.ndarray, threshold: float) -> float:
    """Total length of the hysteresis runs in a [frames] P(speech) track."""
    return sum(end - start for start, end in speech_runs(probabilities, threshold))


def segment_speech_runs(segments: Sequence[np.ndarray],
                        config: SpeechGateConfig) -> list[tuple[tuple[float, float], ...]]:
    """silero's speech runs over each whole segment (seconds from its start), for word times; one batch,
    no early stop (blocking: run it on the decode pool)."""
    tracks = speech_probabilities([lifted(segment, config.lift_below_dbfs) for segment in segments])
    return [speech_runs(track, config.threshold) for track in tracks]


def lifted(samples: np.ndarray, level_dbfs: float) -> np.ndarray:
    """`samples`, raised to `level_dbfs` RMS when quieter (never lowered)."""
    level = rms_dbfs(samples)
    if not np.isfinite(level) or level >= level_dbfs:
        return samples
    return (samples * 10 ** ((level_dbfs - level) / 20)).astype(np.float32)


def gate(segments: Sequence[np.ndarray], config: SpeechGateConfig) -> list[GateOutcome]:
    """One outcome per segment (blocking: run it on the decode pool). Disabled: only silence is skipped."""
    outcomes: list[GateOutcome] = ["silence" if is_silent(s, config.silence_dbfs) else "speech" for s in segments]
    if not config.enabled:
        return outcomes
    candidates = [i for i, outcome in enumerate(outcomes) if outcome == "speech"]
    def has_speech(track: np.ndarray) -> bool:  # more frames only lengthen the runs: a yes stays a yes
        return speech_seconds(track, config.threshold) >= config.min_speech_seconds

    # Speech usually starts within a second: stop scoring once every segment has enough of it.
    tracks = speech_probabilities([lifted(segments[i], config.lift_below_dbfs) for i in candidates],
                                  enough=has_speech)
    for index, track in zip(candidates, tracks):
        if not has_speech(track):
            outcomes[index] = "no_speech"
    return outcomes
