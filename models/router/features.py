"""The router's log-mel front-end (not the ASR front-end): 80 Slaney mels, (log10(mel) + 4) / 4.

The filterbank is transformers' maintained `mel_filter_bank`; the STFT is torch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80


@lru_cache(maxsize=1)
def mel_filters() -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
                           max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(bank.astype(np.float32))  # [201, 80]


def log_mel_one(samples: np.ndarray) -> torch.Tensor:
    """[n] float32 16 kHz -> [1 + n // 160, 80]. Inputs shorter than one window are zero-padded first
    (reflect padding needs more than n_fft / 2 samples)."""
    n_frames = 1 + len(samples) // HOP
    if len(samples) <= N_FFT:
        samples = np.pad(samples, (0, N_FFT + 1 - len(samples)))
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    spec = torch.stft(wave, N_FFT, HOP, N_FFT, window=torch.hann_window(N_FFT, periodic=True), center=True,
                      pad_mode="reflect", return_complex=True)
    power = spec.abs().pow(2)  # [201, frames]
    mel = power.T @ mel_filters()  # [frames, 80]
    return ((torch.log10(torch.clamp(mel, min=1e-10)) + 4.0) / 4.0)[:n_frames]


def log_mel(waveforms: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch: features [B, T, 80] zero-padded, mask [B, T] True on real frames."""
    feats = [log_mel_one(w) for w in waveforms]
    longest = max(f.shape[0] for f in feats)
    batch = torch.zeros(len(feats), longest, N_MELS)
    mask = torch.zeros(len(feats), longest, dtype=torch.bool)
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = True
    return batch, mask
