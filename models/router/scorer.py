"""Batched P(degraded) for waveforms of any length (QualityScorer of models/recognition.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.router.features import SAMPLE_RATE, log_mel
from models.router.network import AudioQualityClassifier


def route_of(score: float, threshold: float) -> bool:
    """True = robust path: P(degraded) >= threshold."""
    return score >= threshold


class RouterScorer:
    """Scores inputs longer than `window_seconds` by windows and keeps the highest score: one badly
    degraded stretch is enough to want the robust path for that audio. 30 s windows use 750 of the
    network's 850 positions (the released code crashes past ≈34 s)."""

    def __init__(self, model: AudioQualityClassifier, device: str | torch.device = "cpu",
                 window_seconds: float = 30.0, max_batch: int = 64, dtype: torch.dtype = torch.float32) -> None:
        # float32 by default on every device: the router is <1 % of inference time, and bf16 moves its
        # scores (bench/bf16_quality.py measures by how much).
        self.model = model.to(device=device, dtype=dtype).eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.window = int(window_seconds * SAMPLE_RATE)
        self.max_batch = max_batch

    def score(self, waveforms: Sequence[np.ndarray]) -> list[float]:
        pieces: list[np.ndarray] = []
        owners: list[int] = []
        for index, wave in enumerate(waveforms):
            for piece in self._windows(np.asarray(wave, dtype=np.float32)):
                pieces.append(piece)
                owners.append(index)
        scores = self._score_pieces(pieces)
        best = [0.0] * len(waveforms)
        for owner, value in zip(owners, scores):
            best[owner] = max(best[owner], value)
        return best

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        if len(wave) <= self.window:
            return [wave]
        starts = list(range(0, len(wave) - self.window + 1, self.window))
        if starts[-1] + self.window < len(wave):
            starts.append(len(wave) - self.window)  # last window overlaps instead of being a scrap
        return [wave[s: s + self.window] for s in starts]

    @torch.inference_mode()
    def _score_pieces(self, pieces: list[np.ndarray]) -> list[float]:
        # sort by length so padding inside a mini-batch stays small; scores go back in input order
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        scores = [0.0] * len(pieces)
        for start in range(0, len(order), self.max_batch):
            chunk = order[start: start + self.max_batch]
            feats, mask = log_mel([pieces[i] for i in chunk])
            probs = self.model.p_degraded(feats.to(self.device, self.dtype), mask.to(self.device)).cpu().tolist()
            for i, p in zip(chunk, probs):
                scores[i] = float(p)
        return scores
