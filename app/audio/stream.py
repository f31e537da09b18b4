"""Decoding audio as a stream of 16 kHz mono float32 blocks, from any seekable binary file object.

The one decoder of the service: the synchronous endpoint decodes its in-memory upload through it (and joins
the blocks), a job decodes its stored upload through it window by window, so memory does not grow with the
recording's length and both paths see exactly the same samples. libsndfile first (wav, flac, ogg, mp3,
aiff...), PyAV/FFmpeg for what it cannot read (m4a/aac/alac, webm/opus...); resampling is soxr's stream
resampler (VHQ), fed block by block. Blocking: the service runs it on its decode thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from app.errors import AudioDecodeError, PayloadTooLarge, UnsupportedMediaType

TARGET_RATE = 16_000
BLOCK_FRAMES = 1 << 16  # frames read from libsndfile per block (~4 s at 16 kHz)
_NOT_AUDIO_MAGIC = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive", b"\x1f\x8b": "a gzip archive", b"{": "JSON text", b"[": "JSON text",
    b"<": "HTML/XML text", b"\x7fELF": "an executable",
}


def refuse_obvious_non_audio(head: bytes) -> None:
    """Raise UnsupportedMediaType when the first bytes of an upload are recognisably not audio."""
    start = head[:8].lstrip() if head[:1] in (b" ", b"\n", b"\r", b"\t") else head[:8]
    for magic, what in _NOT_AUDIO_MAGIC.items():
        if start.startswith(magic):
            raise UnsupportedMediaType(f"the upload is {what}, not audio", param="file")
    sample = head[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        raise UnsupportedMediaType("the upload is plain text, not audio", param="file")


def too_long(seconds: float, max_seconds: float) -> PayloadTooLarge:
    return PayloadTooLarge(f"audio is {seconds:.1f} s long; the limit is {max_seconds:.0f} s", param="file",
                           code="audio_too_long")


class AudioStream:
    """An opened upload: `source_rate`, `channels`, `format`, and `blocks()` of 16 kHz mono float32 [n]."""

    def __init__(self, file: BinaryIO, *, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._file = file
        self._sf: sf.SoundFile | None = None
        try:
            self._sf = sf.SoundFile(file)
        except sf.LibsndfileError:
            file.seek(0)
            self._sf = None
        self.source_rate, self.channels, self.format = self._describe()

    def _describe(self) -> tuple[int, int, str]:
        if self._sf is not None:
            f = self._sf
            if f.samplerate <= 0 or f.channels <= 0:
                raise AudioDecodeError("the audio header declares no sample rate or channels", param="file")
            if f.frames > 0 and f.frames / f.samplerate > self.max_seconds + 1:
                raise too_long(f.frames / f.samplerate, self.max_seconds)
            return f.samplerate, f.channels, f.format.lower()
        return _probe_pyav(self._file)

    def blocks(self) -> Iterator[np.ndarray]:
        """The decoded audio, block after block; raises AudioDecodeError / audio_too_long on the way."""
        resampler = None if self.source_rate == TARGET_RATE else soxr.ResampleStream(
            self.source_rate, TARGET_RATE, 1, dtype="float32", quality="VHQ")
        source = self._soundfile_blocks() if self._sf is not None else _pyav_blocks(self._file)
        total = produced = 0
        for block in source:  # [n, channels] float32 at the source rate
            total += len(block)
            if total / self.source_rate > self.max_seconds:
                raise too_long(total / self.source_rate, self.max_seconds)
            if not np.isfinite(block).all():
                raise AudioDecodeError("the audio contains NaN or infinite sample values", param="file")
            mono = np.ascontiguousarray(block.mean(axis=1) if block.shape[1] > 1 else block[:, 0], np.float32)
            out = mono if resampler is None else resampler.resample_chunk(mono, last=False)
            produced += len(out)
            if len(out):
                yield out
        if total == 0:
            raise AudioDecodeError("the file contains no audio samples", param="file", code="empty_audio")
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield tail

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        f = self._sf
        assert f is not None
        try:
            while True:
                block = f.read(frames=BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield block
        except sf.LibsndfileError as exc:
            raise AudioDecodeError("the file is not audio we can decode (corrupt or truncated)",
                                   param="file") from exc
        finally:
            f.close()


def probe_seconds(file: BinaryIO) -> float | None:
    """The duration a file's header declares (libsndfile frames, else the container's), without decoding;
    None when it does not say or cannot be read (decoding then decides). Leaves the file at its start."""
    try:
        with sf.SoundFile(file) as f:
            return f.frames / f.samplerate if f.frames > 0 and f.samplerate > 0 else None
    except (sf.LibsndfileError, RuntimeError):
        pass
    finally:
        file.seek(0)
    import av

    try:
        with av.open(file, mode="r") as container:
            return container.duration / 1_000_000 if container.duration else None
    except (av.error.FFmpegError, ValueError, IndexError):
        return None
    finally:
        file.seek(0)


def _probe_pyav(file: BinaryIO) -> tuple[int, int, str]:
    import av

    try:
        with av.open(file, mode="r") as container:
            if not container.streams.audio:
                raise UnsupportedMediaType("the file has no audio stream", param="file")
            context = container.streams.audio[0].codec_context
            fmt = container.format.name.split(",")[0]
            rate, channels = context.sample_rate, context.channels
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioDecodeError("the file is not audio we can decode (corrupt, truncated or unsupported "
                               "format)", param="file") from exc
    finally:
        file.seek(0)
    if not rate:
        raise AudioDecodeError("the audio stream declares no sample rate", param="file")
    return rate, channels or 1, fmt


def _pyav_blocks(file: BinaryIO) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(file, mode="r") as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                yield _frame_to_float(frame.to_ndarray(), frame.format.name, frame.layout.nb_channels)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioDecodeError("the file is not audio we can decode (corrupt, truncated or unsupported "
                               "format)", param="file") from exc


def _frame_to_float(array: np.ndarray, sample_format: str, channels: int) -> np.ndarray:
    """PyAV frame array ([channels, n] planar or [1, n*channels] packed) -> [n, channels] float32 in [-1, 1]."""
    if not sample_format.endswith("p"):  # packed: interleaved samples in one row
        array = array.reshape(-1, channels).T
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min == 0:  # unsigned 8-bit
            array = (array.astype(np.float32) - 128.0) / 128.0
        else:
            array = array.astype(np.float32) / float(-info.min)
    return array.astype(np.float32).T
