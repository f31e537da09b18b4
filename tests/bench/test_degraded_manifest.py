"""The survival variants the speech gate and the guards are measured on: levels, SNRs and lengths as named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.audio.decoding import decode_audio, rms_dbfs
from bench.degraded_manifest import survival_variants, trimmed
from models.router_training.degrade import snr_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def load(relative: str) -> np.ndarray:
    return decode_audio((FIXTURES / relative).read_bytes(), max_seconds=60).samples


def test_survival_variants_are_what_they_say():
    audio = load("human/001.wav")
    variants = survival_variants(audio, seed=0)
    assert rms_dbfs(variants["quiet"]) == pytest.approx(-40.0, abs=0.01)
    for snr in (0, 5, 10):
        assert snr_db(audio, variants[f"noise_{snr}db"]) == pytest.approx(snr, abs=0.01)
    assert len(variants["short"]) <= 16_000 and len(variants["short"]) < len(audio)
    assert all(len(v) == len(audio) for k, v in variants.items() if k != "short")
    again = survival_variants(audio, seed=0)
    assert all(np.array_equal(again[k], v) for k, v in variants.items())  # seeded


def test_only_utterances_of_at_most_a_second_get_a_short_variant():
    assert "short" not in survival_variants(load("human/sense_and_sensibility_01_austen_64kb-0880.wav"), 0)
    padded = np.concatenate([np.zeros(8_000, np.float32), load("human/001.wav"), np.zeros(8_000, np.float32)])
    assert len(trimmed(padded)) < len(padded) - 15_000  # the silence around the words is cut
