"""Router training: degradations, the by-source split, a seeded training smoke run, and the shipped demo
router (strict load, and scores on recordings it never trained on)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.router.checkpoint import load_router
from models.router.features import log_mel_one
from models.router.scorer import RouterScorer
from models.router_training import data
from models.router_training.degrade import (
    KINDS,
    compress_dynamics,
    degradation_table,
    extend_bandwidth,
    hard_clip,
    microphone_coloration,
    mild_clean,
    mix_at_snr,
    mu_law_8bit,
    packet_dropout,
    random_level,
    snr_db,
    telephone,
    vary_recording,
    white_noise,
)
from models.router_training.train import CLEAN_KINDS, TrainConfig, evaluate, held_out_examples, train

SHIPPED = Path(data.PROJECT) / "models" / "assets" / "demo_router" / "best_acc_model.safetensors"


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {c.source.removeprefix("fixture:"): c.audio for c in data.fixture_clips()}


@pytest.fixture(scope="module")
def table(clips):
    pool = [audio for path, audio in clips.items() if path not in data.HELD_OUT_FIXTURES]
    return degradation_table(pool)


@pytest.fixture(scope="module")
def speech(clips) -> np.ndarray:
    return clips["human/sense_and_sensibility_01_austen_64kb-0890.wav"]


def log_mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float((log_mel_one(a / np.std(a)) - log_mel_one(b / np.std(b))).abs().mean())


def energy_share_above(audio: np.ndarray, hz: float) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    return float(power[np.fft.rfftfreq(len(audio), 1 / 16000) > hz].sum() / power.sum())


@pytest.mark.parametrize("kind", KINDS)
def test_each_degradation_is_deterministic_same_length_finite_and_changes_the_signal(kind, table, speech):
    first = table[kind](speech, np.random.default_rng(7))
    again = table[kind](speech, np.random.default_rng(7))
    other = table[kind](speech, np.random.default_rng(8))
    assert first.dtype == np.float32 and first.shape == speech.shape
    assert np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # a real change in what the router sees (level-free log-mel distance; rounding-level changes are ~0)
    assert log_mel_distance(first, speech) > 0.04


LABEL_FREE = [vary_recording, mild_clean, random_level, extend_bandwidth, compress_dynamics,
              microphone_coloration]


@pytest.mark.parametrize("change", LABEL_FREE)
def test_label_free_changes_are_deterministic_and_finite(change, speech):
    first, again = change(speech, np.random.default_rng(5)), change(speech, np.random.default_rng(5))
    assert np.array_equal(first, again) and np.isfinite(first).all() and first.dtype == np.float32
    assert 0.8 * len(speech) < len(first) < 1.25 * len(speech)  # only the speed change alters the length


def test_extend_bandwidth_fills_the_band_a_resampler_leaves_empty(speech):
    import soxr

    def top_to_below(audio: np.ndarray) -> float:  # energy 7.7-8 kHz relative to 6.3-7.3 kHz
        return (energy_share_above(audio, 7700.0)
                / (energy_share_above(audio, 6300.0) - energy_share_above(audio, 7300.0)))

    resampled = soxr.resample(soxr.resample(speech, 16000, 22050), 22050, 16000).astype(np.float32)
    assert top_to_below(resampled) < 1e-4
    assert top_to_below(extend_bandwidth(resampled, np.random.default_rng(0))) > 0.03


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0])
def test_noise_is_mixed_at_the_asked_snr(target, speech):
    noise = np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32)
    assert snr_db(speech, mix_at_snr(speech, noise, target)) == pytest.approx(target, abs=0.05)


def test_random_noise_snr_stays_in_the_training_range(speech):
    snrs = [snr_db(speech, white_noise(speech, np.random.default_rng(seed))) for seed in range(20)]
    assert -5.1 <= min(snrs) and max(snrs) <= 10.1 and max(snrs) - min(snrs) > 5.0


def test_telephone_removes_the_band_above_4_khz(speech):
    assert energy_share_above(speech, 4000.0) > 0.01
    assert energy_share_above(telephone(speech, np.random.default_rng(0)), 4000.0) < 1e-4


def test_mu_law_has_256_levels_and_small_relative_error():
    ramp = np.linspace(-1.0, 1.0, 100_001)
    coded = mu_law_8bit(ramp)
    assert len(np.unique(np.round(coded, 9))) == 256
    loud = np.abs(ramp) > 0.1
    assert np.max(np.abs(coded[loud] - ramp[loud]) / np.abs(ramp[loud])) < 0.05


def test_packet_dropout_zeroes_the_asked_share(speech):
    lost = packet_dropout(speech, np.random.default_rng(3), coverage=0.3)
    zeros = (lost == 0) & (speech != 0)
    assert 0.27 < zeros.mean() < 0.31


def test_clipping_flattens_the_peaks(speech):
    clipped = hard_clip(speech, np.random.default_rng(0))
    assert np.mean(np.abs(clipped) >= 0.99 - 1e-6) > 0.02 and np.max(np.abs(clipped)) <= 0.99 + 1e-6


def test_split_is_by_source_and_matches_the_shipped_card():
    items = data.tts_items(0)
    assert all(len({data.is_held_out_sentence(i) for i in item.sentence_ids}) == 1 for item in items)
    held = data.held_out_sources()
    assert [f"fixture:{p}" for p in data.HELD_OUT_FIXTURES] == held[: len(data.HELD_OUT_FIXTURES)]
    assert len(held) > 30 and len(data.SENTENCES) >= 100
    train_clips, held_out = data.load_corpus(0, with_tts=False)
    assert {c.source for c in held_out} == {f"fixture:{p}" for p in data.HELD_OUT_FIXTURES}
    assert not {c.source for c in train_clips} & set(held)
    with safe_open(str(SHIPPED), framework="pt") as f:
        facts = json.loads(f.metadata()["config"])["training"]
    shipped_held_out = facts["corpus"]["held_out_fixture_clips"]
    assert sorted(shipped_held_out) == sorted(f"fixture:{p}" for p in data.HELD_OUT_FIXTURES)


def test_shipped_router_loads_strictly_with_35_tensors():
    model, meta = load_router(SHIPPED)
    assert len(model.state_dict()) == 35 and meta["num_layers"] == 1
    with safe_open(str(SHIPPED), framework="pt") as f:
        assert len(list(f.keys())) == 35
        facts = json.loads(f.metadata()["config"])["training"]
    assert facts["held_out"]["accuracy"] >= 0.9 and facts["config"]["seed"] == 0
    card = (SHIPPED.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"held-out accuracy {facts['held_out']['accuracy']:.1%}" in card
    assert "python -m models.router_training --out models/assets/demo_router --seed 0" in card
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() in card  # the card describes this very file


@pytest.fixture(scope="module")
def shipped_scorer() -> RouterScorer:
    torch.set_num_threads(2)
    return RouterScorer(load_router(SHIPPED)[0])


def test_shipped_router_passes_held_out_clean_recordings(shipped_scorer, clips):
    scores = shipped_scorer.score([clips[p] for p in data.HELD_OUT_FIXTURES])
    assert max(scores) < 0.5, dict(zip(data.HELD_OUT_FIXTURES, scores))


def test_shipped_router_flags_heavily_degraded_held_out_recordings(shipped_scorer, clips, table):
    rng = np.random.default_rng(11)
    held = [clips[p] for p in data.HELD_OUT_FIXTURES]
    babble_pool = [clips[p] for p in clips if p not in data.HELD_OUT_FIXTURES]
    babble = [mix_at_snr(a, np.sum([np.resize(b, len(a)) for b in babble_pool[:4]], axis=0), 0.0)
              for a in held]
    phone_clipped = [hard_clip(telephone(a, rng), rng) for a in held]
    dropouts = [packet_dropout(a, rng, coverage=0.3) for a in held]
    cases = (("babble 0 dB", babble), ("telephone+clipping", phone_clipped), ("30 % dropouts", dropouts))
    for name, batch in cases:
        scores = shipped_scorer.score(batch)
        assert min(scores) > 0.5, (name, dict(zip(data.HELD_OUT_FIXTURES, scores)))


@pytest.fixture
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train() sets the process-wide thread count


def test_training_smoke_is_seeded_and_learns_something(clips, restore_torch_threads):
    corpus = [data.CleanClip(f"fixture:{p}", a, False) for p, a in list(clips.items())[:6]]
    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=4, warmup_steps=1, window_seconds=(1.0, 1.5),
                         threads=1)
    initial = train(corpus, replace(config, steps_per_epoch=0), log=lambda _: None).state_dict()
    models = [train(corpus, config, log=lambda _: None) for _ in range(2)]
    runs = [m.state_dict() for m in models]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # same seed, same weights
    assert not torch.equal(initial["classifier.3.weight"], runs[0]["classifier.3.weight"])
    assert int(runs[0]["frontend.conv.1.num_batches_tracked"]) == 3  # counters are copied, not averaged
    examples = held_out_examples(corpus[:2], seed=0)
    assert len(examples) == 2 * (len(CLEAN_KINDS) + len(KINDS))
    assert [e.label for e in examples[: len(CLEAN_KINDS) + 1]] == [0] * len(CLEAN_KINDS) + [1]
    report = evaluate(models[0], examples)
    assert sum(map(sum, report.confusion)) == len(examples) and 0.0 <= report.accuracy <= 1.0
    assert set(report.per_kind) == set(CLEAN_KINDS + KINDS)


def test_tts_corpus_is_reproducible_with_and_without_the_cache(tmp_path, monkeypatch):
    short = [data.TtsItem((30,), 1.0, 0.667, 0.8), data.TtsItem((31, 32), 0.9, 0.5, 0.6)]
    monkeypatch.setattr(data, "tts_items", lambda seed: short)
    cold = data.tts_clips(0, cache_dir=None)
    written = data.tts_clips(0, cache_dir=tmp_path)
    cached = data.tts_clips(0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    for a, b, c in zip(cold, written, cached):
        assert np.array_equal(a.audio, b.audio) and np.array_equal(a.audio, c.audio)
        assert 0.3 < len(a.audio) / 16000 < 10 and np.abs(a.audio).max() > 0.1
    assert cold[1].source == "tts:31+32"
