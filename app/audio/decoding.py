"""Decoding uploads to mono float32 16 kHz, from in-memory bytes only (never a path or URL).

libsndfile first (wav, flac, ogg, mp3, aiff...), PyAV/FFmpeg for what it cannot read (m4a/aac/alac,
webm/opus...). Blocking: the service calls these from its decode thread pool.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from app.errors import AudioDecodeError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

TARGET_RATE = 16_000
_NOT_AUDIO_MAGIC = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive", b"\x1f\x8b": "a gzip archive", b"{": "JSON text", b"[": "JSON text",
    b"<": "HTML/XML text", b"\x7fELF": "an executable",
}


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
    _refuse_obvious_non_audio(data)
    try:
        samples, rate, channels, fmt = _decode_with_soundfile(data, max_seconds)
    except sf.LibsndfileError:
        samples, rate, channels, fmt = _decode_with_pyav(data, max_seconds)
    if samples.size == 0:
        raise AudioDecodeError("the file contains no audio samples", param="file", code="empty_audio")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("the audio contains NaN or infinite sample values", param="file")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return DecodedAudio(samples=_resample(mono.astype(np.float32), rate), source_rate=rate,
                        channels=channels, format=fmt)


def _refuse_obvious_non_audio(data: bytes) -> None:
    head = data[:8].lstrip() if data[:1] in (b" ", b"\n", b"\r", b"\t") else data[:8]
    for magic, what in _NOT_AUDIO_MAGIC.items():
        if head.startswith(magic):
            raise UnsupportedMediaType(f"the upload is {what}, not audio", param="file")
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        raise UnsupportedMediaType("the upload is plain text, not audio", param="file")


def _too_long(seconds: float, max_seconds: float) -> PayloadTooLarge:
    return PayloadTooLarge(f"audio is {seconds:.1f} s long; the limit is {max_seconds:.0f} s", param="file",
                           code="audio_too_long")


def _decode_with_soundfile(data: bytes, max_seconds: float) -> tuple[np.ndarray, int, int, str]:
    with sf.SoundFile(io.BytesIO(data)) as f:
        if f.samplerate <= 0 or f.channels <= 0:
            raise AudioDecodeError("the audio header declares no sample rate or channels", param="file")
        if f.frames > 0 and f.frames / f.samplerate > max_seconds + 1:
            raise _too_long(f.frames / f.samplerate, max_seconds)
        # Read at most the limit (+1 s), so a header that lies about its length cannot blow memory.
        budget = int((max_seconds + 1) * f.samplerate)
        samples = f.read(frames=budget, dtype="float32", always_2d=True)
        if len(samples) >= budget and f.seekable() and f.tell() < f.frames:
            raise _too_long(f.frames / f.samplerate, max_seconds)
        if len(samples) / f.samplerate > max_seconds:
            raise _too_long(len(samples) / f.samplerate, max_seconds)
        return samples, f.samplerate, f.channels, f.format.lower()


def _decode_with_pyav(data: bytes, max_seconds: float) -> tuple[np.ndarray, int, int, str]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UnsupportedMediaType("the file has no audio stream", param="file")
            stream = container.streams.audio[0]
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            if not rate:
                raise AudioDecodeError("the audio stream declares no sample rate", param="file")
            chunks, total = [], 0
            for frame in container.decode(stream):
                array = frame.to_ndarray()  # [channels, n] planar or [1, n*channels] packed
                array = _frame_to_float(array, frame.format.name, frame.layout.nb_channels)
                chunks.append(array)
                total += array.shape[0]
                if total / rate > max_seconds:
                    raise _too_long(total / rate, max_seconds)
            fmt = container.format.name.split(",")[0]
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioDecodeError("the file is not audio we can decode (corrupt, truncated or unsupported "
                               "format)", param="file") from exc
    if not chunks:
        raise AudioDecodeError("the file contains no audio samples", param="file", code="empty_audio")
    return np.concatenate(chunks, axis=0), rate, channels or chunks[0].shape[1], fmt


def _frame_to_float(array: np.ndarray, sample_format: str, channels: int) -> np.ndarray:
    """PyAV frame array -> [n, channels] float32 in [-1, 1]."""
    if not sample_format.endswith("p"):  # packed: interleaved samples in one row
        array = array.reshape(-1, channels).T
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min == 0:  # unsigned 8-bit
            array = (array.astype(np.float32) - 128.0) / 128.0
        else:
            array = array.astype(np.float32) / float(-info.min)
    return array.astype(np.float32).T


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == TARGET_RATE:
        return np.ascontiguousarray(samples, dtype=np.float32)
    # soxr "VHQ": linear phase, passband flat to ~0.91 of Nyquist; cost is small next to the model.
    return soxr.resample(samples, rate, TARGET_RATE, quality="VHQ").astype(np.float32)


def rms_dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -np.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return -np.inf if rms == 0 else 20 * np.log10(rms)


def is_silent(samples: np.ndarray, threshold_dbfs: float = -60.0) -> bool:
    """True for digital silence or near-silence: nothing a recognizer should be asked about."""
    return rms_dbfs(samples) < threshold_dbfs
