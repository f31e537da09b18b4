"""The recognizer's dtype as the service shows it: the int8 path where `auto` picks it, and float32 with the
reason where the installed torch lacks the int8 kernels (log, /v1/models, asr_model_info)."""

from __future__ import annotations

import logging

import httpx

import models.device
from app.main import create_app
from models.quantized import PackedLinear
from tests.app.conftest import fake_settings
from tests.server import running

AVX2_ONLY = {"architecture": "x86_64", "avx2": True, "avx512_bf16": False, "amx_bf16": False}


def _serve_tests_profile(caplog) -> tuple[dict, str, str, object]:
    app = create_app(fake_settings(device="cpu", dtype="auto", warmup=False))
    with caplog.at_level(logging.INFO), running(app) as base:
        card = httpx.get(f"{base}/v1/models").json()["data"][0]
        metrics = httpx.get(f"{base}/metrics").text
        pipeline = app.state.service.pipeline
    ready = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ready: "))
    return card, metrics, ready, pipeline


def test_auto_on_an_avx2_cpu_serves_int8_and_shows_it(monkeypatch, caplog):
    monkeypatch.setattr(models.device, "cpu_capabilities", lambda: AVX2_ONLY)
    monkeypatch.setattr(models.device, "_int8_kernels_missing", lambda: None)
    card, metrics, ready, pipeline = _serve_tests_profile(caplog)
    assert card["dtype"] == "int8" and "per-row int8 activations" in card["dtype_reason"]
    assert f'dtype="int8",dtype_reason="{card["dtype_reason"]}"' in metrics
    assert "dtype=int8 (auto: " in ready
    assert any(isinstance(m, PackedLinear) for m in pipeline.recognizer.model.modules())


def test_without_the_int8_kernels_startup_runs_float32_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(models.device, "cpu_capabilities", lambda: AVX2_ONLY)
    monkeypatch.setattr(models.device, "_int8_kernels_missing",
                        lambda: "torch 9.9 has no torch.ops.quantized.linear_dynamic")
    card, metrics, ready, pipeline = _serve_tests_profile(caplog)
    reason = "int8 kernels unavailable (torch 9.9 has no torch.ops.quantized.linear_dynamic): float32"
    assert card["dtype"] == "float32" and reason in card["dtype_reason"]
    assert 'dtype="float32",dtype_reason="' in metrics and reason in metrics
    assert "dtype=float32 (auto: " in ready and reason in ready
    assert not any(isinstance(m, PackedLinear) for m in pipeline.recognizer.model.modules())
