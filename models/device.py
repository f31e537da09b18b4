"""Pick the device and dtype a model runs on.

`auto`: CUDA when there is a GPU (bf16, or fp16 on GPUs without bf16); on a CPU, bf16 only when the CPU
has native bf16 matrix instructions (x86 AMX-BF16 or AVX512_BF16, Arm BF16), else fp32.

Why these instruction sets and not `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: oneDNN reports bf16
"supported" on any AVX512 CPU, where it emulates bf16 with fp32 arithmetic (no faster than fp32), and on
a CPU with only AVX2 torch runs bf16 matmuls through a fallback (measured on the AVX2 development machine:
a 2048² product takes 2.4 s as nn.Linear computes it, x·Wᵀ, and 52-70 s as A·B, against 0.1-0.2 s in fp32;
whole Whisper models run 2-3x slower than in fp32). bf16 pays (~3x faster for Whisper and Qwen3-ASR,
DESIGN.md §9) only where the hardware multiplies bf16 itself. The instruction sets come from
torch's own CPU report (`torch.cpu.get_capabilities()`, cpuinfo underneath), not from parsing /proc.

Explicit requests are honoured but validated, so a misconfigured deployment fails at startup with a clear
message instead of silently running somewhere else or several times slower.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}
# torch.cpu.get_capabilities() keys of instruction sets that multiply bf16 matrices natively.
_CPU_BF16_KEYS = {"x86_64": ("amx_bf16", "avx512_bf16"), "arm64": ("bf16", "sve_bf16")}


@dataclass(frozen=True)
class Placement:
    """Where and in which dtype the models run, and why (for the startup log, /v1/models, the bench)."""

    device: torch.device
    dtype: torch.dtype
    reason: str

    @property
    def device_name(self) -> str:
        return str(self.device)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def cpu_capabilities() -> Mapping[str, Any]:
    """torch's runtime CPU report. torch < 2.13 has no public report: its private per-flag checks then."""
    report = getattr(torch.cpu, "get_capabilities", None)
    if report is not None:
        return report()
    import platform

    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    flags = {key: bool(getattr(torch.cpu, name)()) for key, name in checks.items() if hasattr(torch.cpu, name)}
    return {"architecture": "x86_64" if platform.machine() in ("x86_64", "AMD64") else platform.machine(),
            **flags}


def cpu_bf16_instructions(capabilities: Mapping[str, Any] | None = None) -> list[str]:
    """The native bf16 matrix instruction sets of this CPU (empty: none). `capabilities`: tests inject."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    keys = _CPU_BF16_KEYS.get(str(capabilities.get("architecture", "")), ())
    return [key for key in keys if capabilities.get(key) is True]


def _parse_device(device: str, cuda_available: bool) -> torch.device:
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    try:
        parsed = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if parsed.type == "cuda" and not cuda_available:
        raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
    return parsed


def _auto_dtype(device: torch.device, gpu_bf16: bool, cpu_bf16: list[str]) -> tuple[torch.dtype, str]:
    if device.type == "cuda":
        if gpu_bf16:
            return torch.bfloat16, "auto: CUDA with bf16"
        return torch.float16, "auto: CUDA without bf16 support"
    if cpu_bf16:
        return torch.bfloat16, f"auto: CPU with native bf16 ({', '.join(cpu_bf16)})"
    return torch.float32, "auto: this CPU has no native bf16 matrix instructions (no AMX-BF16/AVX512_BF16)"


def _parse_dtype(dtype: str, device: torch.device, gpu_bf16: bool, cpu_bf16: list[str]) -> tuple[torch.dtype, str]:
    name = dtype.strip().lower()
    if name == "auto":
        return _auto_dtype(device, gpu_bf16, cpu_bf16)
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'")
    chosen = _DTYPES[name]
    if device.type == "cpu" and chosen == torch.float16:
        raise ValueError(f"dtype {dtype!r} on CPU is refused: CPU fp16 kernels are slow or missing for parts "
                         "of the model; use float32, or bfloat16 on a CPU with native bf16")
    if device.type == "cpu" and chosen == torch.bfloat16 and not cpu_bf16:
        # Refused rather than warned: it would only be slower (and a warning in a log is easy to miss).
        raise ValueError(f"dtype {dtype!r} on CPU is refused: this CPU has no native bf16 matrix instructions "
                         "(AMX-BF16, AVX512_BF16 or Arm BF16), and torch's bf16 fallback is 10-450x slower "
                         "per matrix product than float32 (measured on an AVX2 CPU); use float32 or auto")
    if device.type == "cuda" and chosen == torch.bfloat16 and not gpu_bf16:
        raise ValueError(f"dtype {dtype!r} was requested but this GPU does not support bfloat16: use float16")
    return chosen, "requested"


def resolve_placement(device: str = "auto", dtype: str = "auto", *, cuda_available: bool | None = None,
                      bf16_supported: bool | None = None,
                      cpu_capabilities_report: Mapping[str, Any] | None = None) -> Placement:
    """Resolve ("auto"|"cpu"|"cuda[:N]", "auto"|"float32"|"bfloat16"|"float16") to a Placement.

    `cuda_available`, `bf16_supported` (the GPU's) and `cpu_capabilities_report` (torch.cpu.get_capabilities()
    shape) default to what torch reports; tests inject them. Raises ValueError for a request this machine
    cannot honour.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    resolved_device = _parse_device(device, cuda_available)
    if bf16_supported is None:
        bf16_supported = resolved_device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu_bf16 = cpu_bf16_instructions(cpu_capabilities_report) if resolved_device.type == "cpu" else []
    resolved_dtype, reason = _parse_dtype(dtype, resolved_device, bf16_supported, cpu_bf16)
    return Placement(resolved_device, resolved_dtype, reason)


def select_device_and_dtype(device: str = "auto", dtype: str = "auto", cuda_available: bool | None = None,
                            bf16_supported: bool | None = None,
                            cpu_capabilities_report: Mapping[str, Any] | None = None,
                            ) -> tuple[torch.device, torch.dtype]:
    """`resolve_placement` as a (device, dtype) pair."""
    placement = resolve_placement(device, dtype, cuda_available=cuda_available, bf16_supported=bf16_supported,
                                  cpu_capabilities_report=cpu_capabilities_report)
    return placement.device, placement.dtype
