"""Decoding uploads to mono float32 16 kHz, from in-memory bytes only (never a path or URL).

The samples come from the service's one streaming decoder (app/audio/stream.py: libsndfile first, PyAV/FFmpeg
for what it cannot read, soxr's stream resampler), joined into one array: a job decodes the same bytes
through the same decoder window by window and sees exactly these samples. Blocking: the service calls these
from its decode thread pool.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from app.audio.stream import TARGET_RATE, AudioStream, refuse_obvious_non_audio
from app.errors import InvalidRequest


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # [n] float32 mono 16 kHz
    source_rate: int
    channels: int
    format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / TARGET_RATE


def decode_audio(data: bytes, *, filename: str | None = None, max_seconds: float) -> DecodedAudio:
    """Decode `data`; raise a ServiceError subclass that says what is wrong with it.

    `filename` is informational only: it never reaches a loader.
    """
    if not data:
        raise InvalidRequest("the uploaded file is empty", param="file", code="empty_file")
    refuse_obvious_non_audio(data[:512])
    stream = AudioStream(io.BytesIO(data), max_seconds=max_seconds)
    blocks = list(stream.blocks())
    samples = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
    return DecodedAudio(samples=np.ascontiguousarray(samples, dtype=np.float32), source_rate=stream.source_rate,
                        channels=stream.channels, format=stream.format)


def rms_dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -np.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return -np.inf if rms == 0 else 20 * np.log10(rms)


def is_silent(samples: np.ndarray, threshold_dbfs: float = -60.0) -> bool:
    """True for digital silence or near-silence: nothing a recognizer should be asked about."""
    return rms_dbfs(samples) < threshold_dbfs
