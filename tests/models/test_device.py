"""Device/dtype selection, with CUDA availability, GPU bf16 support and the CPU report injected."""

from __future__ import annotations

import pytest
import torch

from models.device import (
    cpu_bf16_instructions,
    proc_cpuinfo_flags,
    resolve_placement,
    select_device_and_dtype,
)
from models.quantized import kernels_missing

AVX2_ONLY = {"architecture": "x86_64", "avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
AVX512_NO_BF16 = {**AVX2_ONLY, "avx512_f": True, "avx512_bw": True}  # oneDNN calls this "bf16 supported"
SAPPHIRE_RAPIDS = {**AVX512_NO_BF16, "avx512_bf16": True, "amx_tile": True, "amx_bf16": True}
COOPER_LAKE = {**AVX512_NO_BF16, "avx512_bf16": True}
GRAVITON3 = {"architecture": "arm64", "neon": True, "bf16": True, "sve": True, "sve_bf16": True}
GRAVITON2 = {"architecture": "arm64", "neon": True, "bf16": False}


@pytest.fixture(autouse=True)
def _no_isa_cap(monkeypatch):
    """The CPU reports here are injected: a oneDNN cap in this process's environment (a run as an AVX2 CPU,
    bench/isa.py) must not override them. Tests of the cap pass their own environment."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [
        (True, True, (torch.device("cuda"), torch.bfloat16)),
        (True, False, (torch.device("cuda"), torch.float16)),
        (False, False, (torch.device("cpu"), torch.float32)),
    ],
)
def test_auto_prefers_cuda_bf16_then_fp16_then_cpu_fp32(cuda, bf16, expected):
    assert select_device_and_dtype(cuda_available=cuda, bf16_supported=bf16,
                                   cpu_capabilities_report=AVX2_ONLY) == expected


@pytest.mark.parametrize(("report", "expected"), [
    (AVX2_ONLY, []), (AVX512_NO_BF16, []), (SAPPHIRE_RAPIDS, ["amx_bf16", "avx512_bf16"]),
    (COOPER_LAKE, ["avx512_bf16"]), (GRAVITON3, ["bf16", "sve_bf16"]), (GRAVITON2, []),
    ({"architecture": "ppc64", "bf16": True}, []), ({}, []),
])
def test_native_cpu_bf16_is_read_from_the_instruction_sets(report, expected):
    assert cpu_bf16_instructions(report) == expected


@pytest.mark.parametrize(("report", "dtype"), [
    (AVX2_ONLY, torch.float32), (AVX512_NO_BF16, torch.float32), (SAPPHIRE_RAPIDS, torch.bfloat16),
    (COOPER_LAKE, torch.bfloat16), (GRAVITON3, torch.bfloat16),
])
def test_auto_on_cpu_is_bf16_only_with_native_bf16(report, dtype):
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=report)
    assert (placement.device, placement.dtype) == (torch.device("cpu"), dtype)
    assert placement.reason.startswith("auto: ")
    assert ("no native bf16" in placement.reason) == (dtype == torch.float32)


def test_placement_names_what_the_api_and_metrics_show():
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=SAPPHIRE_RAPIDS)
    assert (placement.device_name, placement.dtype_name) == ("cpu", "bfloat16")
    assert "amx_bf16" in placement.reason
    assert resolve_placement("cuda:1", "auto", cuda_available=True, bf16_supported=True).device_name == "cuda:1"


def test_explicit_requests_are_honoured():
    assert select_device_and_dtype("cpu", "float32", cuda_available=True, bf16_supported=True) == (
        torch.device("cpu"), torch.float32)
    assert select_device_and_dtype("cuda:1", "fp16", cuda_available=True, bf16_supported=True) == (
        torch.device("cuda:1"), torch.float16)
    assert select_device_and_dtype("CUDA", "bf16", cuda_available=True, bf16_supported=True) == (
        torch.device("cuda"), torch.bfloat16)
    assert select_device_and_dtype("cpu", "auto", cuda_available=True, bf16_supported=True,
                                   cpu_capabilities_report=AVX2_ONLY) == (torch.device("cpu"), torch.float32)
    assert select_device_and_dtype("cpu", "bfloat16", cuda_available=False,
                                   cpu_capabilities_report=SAPPHIRE_RAPIDS) == (torch.device("cpu"), torch.bfloat16)
    assert resolve_placement("cpu", "float32", cuda_available=False).reason == "requested"


def test_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device_and_dtype("cuda", cuda_available=False)


@pytest.mark.parametrize("dtype", ["bfloat16", "bf16"])
@pytest.mark.parametrize("report", [AVX2_ONLY, AVX512_NO_BF16, GRAVITON2])
def test_bf16_on_a_cpu_without_native_bf16_is_refused(dtype, report):
    with pytest.raises(ValueError, match="no native bf16 matrix instructions.*use int8, float32 or auto"):
        select_device_and_dtype("cpu", dtype, cuda_available=False, cpu_capabilities_report=report)


@pytest.mark.parametrize("dtype", ["float16", "fp16", "half"])
def test_fp16_on_cpu_is_refused_even_with_native_bf16(dtype):
    with pytest.raises(ValueError, match="on CPU is refused"):
        select_device_and_dtype("cpu", dtype, cuda_available=False, cpu_capabilities_report=SAPPHIRE_RAPIDS)


def test_bf16_on_a_gpu_without_bf16_is_refused():
    with pytest.raises(ValueError, match="does not support bfloat16"):
        select_device_and_dtype("cuda", "bfloat16", cuda_available=True, bf16_supported=False)


@pytest.mark.parametrize(("device", "dtype"), [("tpu", "auto"), ("mps", "auto"), ("cpu", "int4"), ("gpu0", "auto")])
def test_unknown_names_are_refused(device, dtype):
    with pytest.raises(ValueError):
        select_device_and_dtype(device, dtype, cuda_available=True, bf16_supported=True)


def test_defaults_follow_this_machine():
    placement = resolve_placement()
    assert placement.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if placement.device.type == "cpu":
        native = cpu_bf16_instructions()
        expected = "bfloat16" if native else ("int8" if kernels_missing() is None else "float32")
        assert placement.dtype_name == expected


def test_this_machines_report_has_the_keys_the_check_reads():
    # A torch upgrade that renamed the capability keys would silently turn bf16 off: fail here instead.
    report = torch.cpu.get_capabilities()
    keys = {"x86_64": ("amx_bf16", "avx512_bf16"), "arm64": ("bf16",)}.get(report["architecture"], ())
    assert all(key in report for key in keys)


# --- int8 (models/quantized.py) --------------------------------------------------------------------------
def _no_kernels() -> str:
    return "torch 9.9 has no torch.ops.quantized.linear_dynamic"


@pytest.mark.parametrize("report", [AVX2_ONLY, AVX512_NO_BF16, GRAVITON2])
def test_auto_on_a_cpu_without_native_bf16_is_int8(report):
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=report,
                                  int8_kernels_missing=lambda: None)
    assert (placement.dtype, placement.packed, placement.dtype_name) == (torch.float32, "int8", "int8")
    assert "no native bf16" in placement.reason and "per-row int8 activations" in placement.reason


def test_auto_falls_back_to_float32_and_says_why_when_torch_lacks_the_kernels():
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=AVX2_ONLY,
                                  int8_kernels_missing=_no_kernels)
    assert (placement.dtype, placement.packed, placement.dtype_name) == (torch.float32, None, "float32")
    assert "int8 kernels unavailable (torch 9.9 has no torch.ops.quantized.linear_dynamic)" in placement.reason
    explicit = resolve_placement("cpu", "int8", cuda_available=False, int8_kernels_missing=_no_kernels)
    assert (explicit.dtype_name, explicit.packed) == ("float32", None)
    assert explicit.reason.startswith("int8 requested, but its kernels are unavailable")


def test_native_bf16_keeps_bf16_and_int8_is_honoured_when_asked():
    assert resolve_placement(cuda_available=False, cpu_capabilities_report=COOPER_LAKE,
                             int8_kernels_missing=lambda: None).dtype_name == "bfloat16"
    explicit = resolve_placement("cpu", "int8", cuda_available=False, cpu_capabilities_report=COOPER_LAKE,
                                 int8_kernels_missing=lambda: None)
    assert (explicit.dtype, explicit.packed, explicit.reason) == (torch.float32, "int8", "requested")
    benchmark_only = resolve_placement("cpu", "int8-tensor", cuda_available=False, int8_kernels_missing=lambda: None)
    assert "NOT batch-invariant" in benchmark_only.reason


def test_int8_on_a_gpu_is_refused():
    with pytest.raises(ValueError, match="CPU only"):
        resolve_placement("cuda", "int8", cuda_available=True, bf16_supported=True)


@pytest.mark.parametrize(("limit", "native"), [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                                               ("AVX512_CORE_AMX", True), (None, True)])
def test_a_onednn_isa_cap_below_bf16_means_no_native_bf16(monkeypatch, limit, native):
    if limit is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert bool(cpu_bf16_instructions(SAPPHIRE_RAPIDS)) == native
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=SAPPHIRE_RAPIDS,
                                  int8_kernels_missing=lambda: None)
    assert placement.dtype_name == ("bfloat16" if native else "int8")
    if not native:
        assert f"ONEDNN_MAX_CPU_ISA={limit.upper()}" in placement.reason
        with pytest.raises(ValueError, match="no native bf16"):
            resolve_placement("cpu", "bfloat16", cuda_available=False, cpu_capabilities_report=SAPPHIRE_RAPIDS)


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert proc_cpuinfo_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert proc_cpuinfo_flags(str(tmp_path / "missing")) == set()


ZEN4 = {**COOPER_LAKE, "avx512_vnni": True}  # AVX512_BF16 without AMX, with VNNI (this bench's AMD EPYC)


def test_native_bf16_without_amx_keeps_bf16_where_int8_was_only_marginally_faster():
    placement = resolve_placement(cuda_available=False, cpu_capabilities_report=ZEN4, int8_kernels_missing=lambda: None)
    assert placement.dtype_name == "bfloat16" and "native bf16 (avx512_bf16)" in placement.reason
