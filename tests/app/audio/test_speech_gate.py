"""The speech gate on real recordings: noise, music, beeps and machine sounds have no speech; quiet, noisy,
reverberant, telephone and short speech does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.audio.decoding import decode_audio, rms_dbfs
from app.audio.speech_gate import SpeechGateConfig, gate, lifted, speech_seconds
from app.audio.vad import speech_probabilities
from bench.degraded_manifest import degrade_variants, survival_variants
from models.router_training.degrade import mix_at_snr

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
NONSPEECH = sorted((FIXTURES / "nonspeech").glob("*.flac"))
CONFIG = SpeechGateConfig()


def load(path: Path) -> np.ndarray:
    return decode_audio(path.read_bytes(), max_seconds=600).samples


def speech_recordings() -> list[np.ndarray]:
    return [load(path) for path in sorted((FIXTURES / "human").glob("*.wav"))
            + sorted((FIXTURES / "tts-multilingual").glob("*/*.wav"))]


def test_every_non_speech_recording_has_no_speech():
    assert len(NONSPEECH) >= 10
    outcomes = gate([load(path) for path in NONSPEECH], CONFIG)
    assert outcomes == ["no_speech"] * len(NONSPEECH), dict(zip((p.name for p in NONSPEECH), outcomes))


def test_speech_survives_level_noise_rooms_phones_and_short_cuts():
    recordings = speech_recordings()
    cases: dict[str, list[np.ndarray]] = {}
    for index, audio in enumerate(recordings):
        pool = [other for j, other in enumerate(recordings) if j != index]
        degraded = degrade_variants(audio, pool, index)
        variants = {"clean": audio, "reverb": degraded["reverb"], "telephone": degraded["telephone"],
                    **survival_variants(audio, index)}
        variants["very_quiet"] = (audio * 10 ** ((-58 - rms_dbfs(audio)) / 20)).astype(np.float32)
        for kind, samples in variants.items():
            cases.setdefault(kind, []).append(samples)
    assert len(cases["short"]) >= 3 and all(len(s) <= 16_000 for s in cases["short"])
    for kind, clips in cases.items():
        outcomes = gate(clips, CONFIG)
        assert outcomes == ["speech"] * len(clips), (kind, outcomes)


def test_silence_is_told_apart_and_the_gate_can_be_turned_off():
    noise = load(FIXTURES / "nonspeech" / "chainsaw.flac")
    speech = load(FIXTURES / "human" / "goforward.wav")
    segments = [np.zeros(16_000, np.float32), noise, speech]
    assert gate(segments, CONFIG) == ["silence", "no_speech", "speech"]
    assert gate(segments, SpeechGateConfig(enabled=False)) == ["silence", "speech", "speech"]
    assert gate([speech], SpeechGateConfig(min_speech_seconds=5.0)) == ["no_speech"]  # 2.8 s of audio


def test_speech_in_heavy_noise_still_passes_on_its_own_and_in_a_batch():
    speech = load(FIXTURES / "human" / "alsa_Front_Left.wav")
    noisy = mix_at_snr(speech, np.random.default_rng(3).standard_normal(len(speech)).astype(np.float32), 0.0)
    long_noise = load(FIXTURES / "nonspeech" / "music_cold_day.flac")
    alone = speech_probabilities([noisy])[0]
    batched = speech_probabilities([long_noise, noisy, np.zeros(100, np.float32)])
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)  # rows do not leak into each other
    assert len(batched[2]) == 0 and len(batched[0]) == len(long_noise) // 512
    assert speech_seconds(alone, CONFIG.threshold) >= CONFIG.min_speech_seconds


def test_scoring_stops_once_every_segment_has_enough_speech_with_the_full_runs_frames():
    speech = load(FIXTURES / "human" / "goforward.wav")
    noise = load(FIXTURES / "nonspeech" / "chainsaw.flac")[:len(speech)]
    full = speech_probabilities([speech, noise])

    def enough(track: np.ndarray) -> bool:
        return speech_seconds(track, CONFIG.threshold) >= CONFIG.min_speech_seconds

    early = speech_probabilities([speech], enough=enough)[0]
    assert 0 < len(early) < len(full[0]) and enough(early)
    np.testing.assert_allclose(early, full[0][:len(early)], atol=1e-5)  # the frames a full run scores
    together = speech_probabilities([speech, noise], enough=enough)  # the noise never has enough: no stop
    assert [len(t) for t in together] == [len(t) for t in full]


def test_speech_seconds_counts_hysteresis_runs():
    track = np.array([0.1, 0.6, 0.4, 0.36, 0.2, 0.9, 0.3, 0.5], np.float32)
    # runs: [0.6 0.4 0.36] (stays >= 0.35), then [0.9], then [0.5] to the end
    assert speech_seconds(track, 0.5) == pytest.approx(5 * 0.032)
    assert speech_seconds(np.zeros(10, np.float32), 0.5) == 0.0


def test_quiet_segments_are_lifted_never_lowered():
    speech = load(FIXTURES / "human" / "goforward.wav")
    quiet = (speech * 0.001).astype(np.float32)
    assert rms_dbfs(lifted(quiet, -40.0)) == pytest.approx(-40.0, abs=0.01)
    assert lifted(speech, -40.0) is speech
    assert lifted(np.zeros(10, np.float32), -40.0).max() == 0.0
