"""models.whisper.features: the log-mel computed over the audio only equals transformers' extractor over the
padded 30 s window, bit for bit, at every length from empty to the full window and beyond."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from models.whisper.features import LogMel, supports
from tests.models.whisper import load_clip

LENGTHS = (0, 1, 199, 200, 401, 16_000, 47_999, 48_000, 240_123, 479_440, 479_600, 479_999, 480_000, 520_000)


def _extractor_features(extractor: WhisperFeatureExtractor, waveform: np.ndarray) -> torch.Tensor:
    return extractor([waveform], sampling_rate=16_000, return_tensors="pt").input_features[0]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_equals_the_extractors_at_every_length(n_mels):
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    log_mel = LogMel(extractor)
    generator = np.random.default_rng(0)
    for length in LENGTHS:
        waveform = (generator.standard_normal(length) * 0.1).astype(np.float32)
        mine, theirs = log_mel(waveform), _extractor_features(extractor, waveform)
        assert mine.shape == theirs.shape == (n_mels, 3000)
        assert torch.equal(mine, theirs), f"length {length}"


def test_log_mel_equals_the_extractors_on_speech_silence_and_a_loud_edge():
    extractor = WhisperFeatureExtractor(feature_size=80)
    log_mel = LogMel(extractor)
    speech = load_clip("human/goforward.wav")
    loud_end = np.concatenate([np.zeros(30_000, np.float32), np.full(100, 0.9, np.float32)])
    for waveform in (speech, np.zeros(48_000, np.float32), loud_end, speech[:-1]):
        assert torch.equal(log_mel(waveform), _extractor_features(extractor, waveform))


def test_an_extractor_with_dither_is_not_taken():
    assert supports(WhisperFeatureExtractor(feature_size=80))
    dithered = WhisperFeatureExtractor(feature_size=80, dither=1e-5)
    assert not supports(dithered)
    with pytest.raises(ValueError, match="not Whisper's log-mel"):
        LogMel(dithered)
