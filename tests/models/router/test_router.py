"""The router: exact released state dict, features, strict checkpoints, batched and windowed scoring."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.router.checkpoint import RouterCheckpointError, load_router, save_router
from models.router.features import log_mel, log_mel_one
from models.router.network import AudioQualityClassifier, RouterConfig
from models.router.scorer import RouterScorer, route_of
from models.tiny.router import build_tiny_router, write_router_checkpoint

RNG = np.random.default_rng(0)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * envelope * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_state_dict_matches_the_released_checkpoint():
    state = AudioQualityClassifier(RouterConfig()).state_dict()
    assert len(state) == 35
    assert sum(t.numel() for t in state.values()) == 1_172_229
    expected = {"frontend.conv.0.weight": (128, 80, 3), "frontend.conv.1.running_var": (128,),
                "frontend.conv.4.weight": (256, 128, 3), "pos_encoder.pe": (1, 850, 256),
                "transformer.layers.0.self_attn.in_proj_weight": (768, 256),
                "transformer.layers.0.linear1.weight": (1024, 256), "transformer.norm.weight": (256,),
                "pooling.query.weight": (1, 256), "classifier.0.weight": (128, 256), "classifier.3.weight": (2, 256 // 2)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key


def test_features_shape_floor_and_independent_check():
    wave = speechlike(2.0)
    feats = log_mel_one(wave)
    assert feats.shape == (1 + len(wave) // 160, 80)
    silence = log_mel_one(np.zeros(16000, np.float32))
    assert torch.allclose(silence, torch.full_like(silence, -1.5))
    # independent reference: transformers' numpy spectrogram with the same filterbank
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    filters = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0, max_frequency=8000,
                              sampling_rate=16000, norm="slaney", mel_scale="slaney")
    mel = spectrogram(wave, window_function(400, "hann", periodic=True), frame_length=400, hop_length=160,
                      power=2.0, mel_filters=filters, mel_floor=1e-10, log_mel="log10", center=True,
                      pad_mode="reflect")
    reference = (mel.T + 4.0) / 4.0
    assert np.allclose(feats.numpy(), reference[: feats.shape[0]], atol=1e-4)


def test_batch_scores_equal_one_by_one():
    scorer = RouterScorer(build_tiny_router())
    waves = [speechlike(s, i) for i, s in enumerate([0.3, 2.0, 7.5, 12.0, 0.01])]
    batched = scorer.score(waves)
    single = [scorer.score([w])[0] for w in waves]
    assert np.allclose(batched, single, atol=1e-5)
    assert all(0.0 <= s <= 1.0 for s in batched)


def test_long_input_is_scored_by_windows_and_takes_the_max():
    scorer = RouterScorer(build_tiny_router())
    long = np.concatenate([speechlike(30.0, 1), speechlike(30.0, 2), speechlike(10.0, 3)])
    score = scorer.score([long])[0]
    windows = [long[:480000], long[480000:960000], long[-480000:]]
    assert score == pytest.approx(max(scorer.score(windows)), abs=1e-6)
    with pytest.raises(ValueError, match="exceed"):  # the bare network would have crashed
        feats, mask = log_mel([long])
        build_tiny_router()(feats, mask)


def test_route_threshold_semantics():
    assert route_of(0.5, 0.5) and not route_of(0.49, 0.5) and route_of(0.0, 0.0)


@pytest.mark.parametrize("fmt,name", [("safetensors", "best_acc_model.safetensors"), ("pt", "best_acc_model.pt")])
def test_both_released_formats_load_and_agree(tmp_path, fmt, name):
    path = write_router_checkpoint(tmp_path / name, fmt=fmt, metadata_num_layers=4)
    model, meta = load_router(path)
    assert model.config.num_layers == 1 and meta["num_layers"] == 4  # shapes win over metadata
    reference = build_tiny_router()
    feats, mask = log_mel([speechlike(3.0)])
    assert torch.allclose(model.p_degraded(feats, mask), reference.p_degraded(feats, mask), atol=1e-6)


def test_save_router_round_trip(tmp_path):
    model = build_tiny_router(seed=3)
    save_router(model, tmp_path / "r.safetensors")
    loaded, meta = load_router(tmp_path / "r.safetensors")
    assert meta["num_layers"] == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_files_are_refused_with_the_file_named(tmp_path):
    good = write_router_checkpoint(tmp_path / "good.safetensors")
    state = load_file(str(good))
    cases = {}
    cases["random.safetensors"] = lambda p: p.write_bytes(RNG.bytes(4096))
    cases["nondict.pt"] = lambda p: torch.save([1, 2, 3], str(p))
    cases["evil.pt"] = lambda p: p.write_bytes(pickle.dumps({"model_state_dict": Evil()}))
    cases["missing.safetensors"] = lambda p: save_file({k: v for k, v in state.items() if k != "pooling.query.bias"}, str(p))
    cases["extra.safetensors"] = lambda p: save_file({**state, "extra.weight": torch.zeros(2)}, str(p))
    cases["shape.safetensors"] = lambda p: save_file({**state, "classifier.3.bias": torch.zeros(3)}, str(p))
    cases["model.onnx"] = lambda p: p.write_bytes(b"onnx")
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(RouterCheckpointError) as error:
            load_router(path)
        assert name in str(error.value), name
