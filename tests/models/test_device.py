"""Device/dtype selection, with CUDA availability and bf16 support injected (tests run on CPU)."""

from __future__ import annotations

import pytest
import torch

from models.device import select_device_and_dtype


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [
        (True, True, (torch.device("cuda"), torch.bfloat16)),
        (True, False, (torch.device("cuda"), torch.float16)),
        (False, False, (torch.device("cpu"), torch.float32)),
    ],
)
def test_auto_prefers_cuda_bf16_then_fp16_then_cpu_fp32(cuda, bf16, expected):
    assert select_device_and_dtype(cuda_available=cuda, bf16_supported=bf16) == expected


def test_explicit_requests_are_honoured():
    assert select_device_and_dtype("cpu", "float32", cuda_available=True, bf16_supported=True) == (
        torch.device("cpu"), torch.float32)
    assert select_device_and_dtype("cuda:1", "fp16", cuda_available=True, bf16_supported=True) == (
        torch.device("cuda:1"), torch.float16)
    assert select_device_and_dtype("CUDA", "bf16", cuda_available=True, bf16_supported=True) == (
        torch.device("cuda"), torch.bfloat16)
    assert select_device_and_dtype("cpu", "auto", cuda_available=True, bf16_supported=True) == (
        torch.device("cpu"), torch.float32)


def test_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device_and_dtype("cuda", cuda_available=False)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "bf16", "fp16"])
def test_half_precision_on_cpu_is_refused(dtype):
    with pytest.raises(ValueError, match="on CPU is refused"):
        select_device_and_dtype("cpu", dtype, cuda_available=False)


def test_bf16_on_a_gpu_without_bf16_is_refused():
    with pytest.raises(ValueError, match="does not support bfloat16"):
        select_device_and_dtype("cuda", "bfloat16", cuda_available=True, bf16_supported=False)


@pytest.mark.parametrize(("device", "dtype"), [("tpu", "auto"), ("mps", "auto"), ("cpu", "int8"), ("gpu0", "auto")])
def test_unknown_names_are_refused(device, dtype):
    with pytest.raises(ValueError):
        select_device_and_dtype(device, dtype, cuda_available=True, bf16_supported=True)


def test_defaults_follow_this_machine():
    device, dtype = select_device_and_dtype()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        assert dtype == torch.float32
