"""Test inputs for random-weight models: chirps in noise, different per seed, so rows really differ."""

from __future__ import annotations

import numpy as np

from models.recognition import SAMPLE_RATE


def chirp(seconds: float, seed: int, base_hz: float = 150.0, step_hz: float = 90.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * (base_hz + step_hz * seed) * t * (1 + t))
            + rng.normal(0, 0.05, t.size)).astype(np.float32)
