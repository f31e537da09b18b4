"""Pick the device and dtype a model runs on.

`auto`: CUDA when there is a GPU (bf16, or fp16 on GPUs without bf16); on a CPU, bf16 when the CPU has
native bf16 matrix instructions (x86 AMX-BF16 or AVX512_BF16, Arm BF16), else int8, or fp32 where torch
lacks the int8 kernels.

Why these instruction sets and not `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: oneDNN reports bf16
"supported" on any AVX512 CPU, where it emulates bf16 with fp32 arithmetic (no faster than fp32), and on
a CPU with only AVX2 torch runs bf16 matmuls through a fallback (measured on the AVX2 development machine:
a 2048² product takes 2.4 s as nn.Linear computes it, x·Wᵀ, and 52-70 s as A·B, against 0.1-0.2 s in fp32;
whole Whisper models run 2-3x slower than in fp32). bf16 pays (~3x faster for Whisper and Qwen3-ASR,
DESIGN.md §9) only where the hardware multiplies bf16 itself. The instruction sets come from
torch's own CPU report (`torch.cpu.get_capabilities()`, cpuinfo underneath); /proc/cpuinfo's flags only
where torch has no report.

Explicit requests are honoured but validated, so a misconfigured deployment fails at startup with a clear
message instead of silently running somewhere else or several times slower.

`int8` (models/quantized.py, models/linear_plans.py): the model stays float32 and its Linear layers get int8
weights with per-row int8 activations (FBGEMM), chosen per model part. `auto` picks it on CPUs without
native bf16 (most of the AVX2 machines this runs on): same tokens alone and batched, corpus WER no worse
than fp32's (bench/bf16_quality.py). On a CPU with native bf16 but no AMX (AMD Zen 4, AVX512_BF16 + VNNI)
int8 measured only 1.06x faster than bf16 end to end (Whisper base) and changes more texts, so bf16 stays. Where torch lacks the kernels, start-up runs float32 and the reason
says so. The oneDNN ISA limit (`ONEDNN_MAX_CPU_ISA`, used to run as an AVX2 CPU: bench/isa.py) counts:
bf16 is native only if oneDNN may use the instructions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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
# Packed-linear dtypes (models/quantized.py kinds): the activations stay float32. int8-tensor is FBGEMM's
# per-tensor scheme, which is not batch-invariant: for benchmarks only, refused by the service's settings.
_PACKED = {"int8": "int8", "int8-tensor": "int8-tensor", "fp16-weights": "fp16"}
# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA values) below which bf16 matrix products are not native.
_ONEDNN_NO_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


@dataclass(frozen=True)
class Placement:
    """Where and in which dtype the models run, and why (for the startup log, /v1/models, the bench)."""

    device: torch.device
    dtype: torch.dtype  # the model's (activations', and every weight not packed)
    reason: str
    packed: str | None = None  # models.quantized kind of the planned Linear layers ("int8"), None: plain dtype

    @property
    def device_name(self) -> str:
        return str(self.device)

    @property
    def dtype_name(self) -> str:
        """What the log, /v1/models and asr_model_info show: "int8" for the packed path."""
        if self.packed is not None:
            return next(name for name, kind in _PACKED.items() if kind == self.packed)
        return str(self.dtype).removeprefix("torch.")


def cpu_capabilities() -> Mapping[str, Any]:
    """torch's runtime CPU report (cpuinfo). torch < 2.13 has no public report: the kernel's CPU flags
    (/proc/cpuinfo) then, under the names torch's report uses."""
    report = getattr(torch.cpu, "get_capabilities", None)
    if report is not None:
        return report()
    import platform

    machine = platform.machine()
    flags = proc_cpuinfo_flags()
    names = {"avx2": "avx2", "avx512f": "avx512_f", "avx512_bf16": "avx512_bf16", "amx_bf16": "amx_bf16",
             "avx512_vnni": "avx512_vnni", "bf16": "bf16"}
    return {"architecture": "x86_64" if machine in ("x86_64", "AMD64") else machine.replace("aarch64", "arm64"),
            **{key: flag in flags for flag, key in names.items()}}


def proc_cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's flags (x86 `flags`, Arm `Features`) as the kernel reports them; empty if unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def onednn_isa_limit(environ: Mapping[str, str] | None = None) -> str | None:
    """The oneDNN ISA cap set for this process (ONEDNN_MAX_CPU_ISA, or its old name DNNL_MAX_CPU_ISA)."""
    environ = os.environ if environ is None else environ
    value = environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value else None


def cpu_bf16_instructions(capabilities: Mapping[str, Any] | None = None,
                          environ: Mapping[str, str] | None = None) -> list[str]:
    """The native bf16 matrix instruction sets this process may use (empty: none): the CPU's, unless oneDNN
    (which runs torch's bf16 matrix products) is capped below them. `capabilities`, `environ`: tests inject."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    if onednn_isa_limit(environ) in _ONEDNN_NO_BF16:
        return []
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


Choice = tuple[torch.dtype, str, "str | None"]  # (model dtype, reason, packed kind)
_INT8_WHAT = "int8 Linear weights with per-row int8 activations (FBGEMM; same tokens alone and batched)"


def _auto_dtype(device: torch.device, gpu_bf16: bool, cpu_bf16: list[str],
                int8_missing: Callable[[], str | None]) -> Choice:
    if device.type == "cuda":
        if gpu_bf16:
            return torch.bfloat16, "auto: CUDA with bf16", None
        return torch.float16, "auto: CUDA without bf16 support", None
    if cpu_bf16:  # int8 measured only 1.06x bf16 here (Zen 4, no AMX) and moves more texts: bf16 stays
        return torch.bfloat16, f"auto: CPU with native bf16 ({', '.join(cpu_bf16)})", None
    why = "auto: this CPU has no native bf16 matrix instructions (no AMX-BF16/AVX512_BF16)"
    if onednn_isa_limit() in _ONEDNN_NO_BF16:
        why = f"auto: bf16 is not native under ONEDNN_MAX_CPU_ISA={onednn_isa_limit()}"
    missing = int8_missing()
    if missing is not None:
        return torch.float32, f"{why}; int8 kernels unavailable ({missing}): float32", None
    return torch.float32, f"{why}: {_INT8_WHAT}", "int8"


def _packed_choice(name: str, device: torch.device, int8_missing: Callable[[], str | None]) -> Choice:
    if device.type != "cpu":
        raise ValueError(f"dtype {name!r} runs on the CPU only (FBGEMM kernels); use auto or bfloat16 on a GPU")
    missing = int8_missing()
    if missing is not None:
        return torch.float32, f"{name} requested, but its kernels are unavailable ({missing}): float32", None
    reason = "requested" + ("; NOT batch-invariant (benchmarks only)" if name == "int8-tensor" else "")
    return torch.float32, reason, _PACKED[name]


def _parse_dtype(dtype: str, device: torch.device, gpu_bf16: bool, cpu_bf16: list[str],
                 int8_missing: Callable[[], str | None]) -> Choice:
    name = dtype.strip().lower()
    if name == "auto":
        return _auto_dtype(device, gpu_bf16, cpu_bf16, int8_missing)
    if name in _PACKED:
        return _packed_choice(name, device, int8_missing)
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16', 'float16' or 'int8'")
    chosen = _DTYPES[name]
    if device.type == "cpu" and chosen == torch.float16:
        raise ValueError(f"dtype {dtype!r} on CPU is refused: CPU fp16 kernels are slow or missing for parts "
                         "of the model; use float32, int8, or bfloat16 on a CPU with native bf16")
    if device.type == "cpu" and chosen == torch.bfloat16 and not cpu_bf16:
        # Refused rather than warned: it would only be slower (and a warning in a log is easy to miss).
        raise ValueError(f"dtype {dtype!r} on CPU is refused: this CPU has no native bf16 matrix instructions "
                         "(AMX-BF16, AVX512_BF16 or Arm BF16), and torch's bf16 fallback is 10-450x slower "
                         "per matrix product than float32 (measured on an AVX2 CPU); use int8, float32 or auto")
    if device.type == "cuda" and chosen == torch.bfloat16 and not gpu_bf16:
        raise ValueError(f"dtype {dtype!r} was requested but this GPU does not support bfloat16: use float16")
    return chosen, "requested", None


def _int8_kernels_missing() -> str | None:
    from models.quantized import kernels_missing

    return kernels_missing()


def resolve_placement(device: str = "auto", dtype: str = "auto", *, cuda_available: bool | None = None,
                      bf16_supported: bool | None = None,
                      cpu_capabilities_report: Mapping[str, Any] | None = None,
                      int8_kernels_missing: Callable[[], str | None] | None = None) -> Placement:
    """Resolve ("auto"|"cpu"|"cuda[:N]", "auto"|"float32"|"bfloat16"|"float16"|"int8") to a Placement.

    `cuda_available`, `bf16_supported` (the GPU's), `cpu_capabilities_report` (torch.cpu.get_capabilities()
    shape) and `int8_kernels_missing` (None when the int8 kernels work, else why not) default to what this
    machine and torch report; tests inject them. Raises ValueError for a request this machine cannot honour.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    resolved_device = _parse_device(device, cuda_available)
    if bf16_supported is None:
        bf16_supported = resolved_device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu_bf16 = []
    if resolved_device.type == "cpu":
        cpu_bf16 = cpu_bf16_instructions(cpu_capabilities() if cpu_capabilities_report is None
                                         else cpu_capabilities_report)
    resolved_dtype, reason, packed = _parse_dtype(dtype, resolved_device, bf16_supported, cpu_bf16,
                                                  int8_kernels_missing or _int8_kernels_missing)
    return Placement(resolved_device, resolved_dtype, reason, packed)


def select_device_and_dtype(device: str = "auto", dtype: str = "auto", cuda_available: bool | None = None,
                            bf16_supported: bool | None = None,
                            cpu_capabilities_report: Mapping[str, Any] | None = None,
                            ) -> tuple[torch.device, torch.dtype]:
    """`resolve_placement` as a (device, dtype) pair."""
    placement = resolve_placement(device, dtype, cuda_available=cuda_available, bf16_supported=bf16_supported,
                                  cpu_capabilities_report=cpu_capabilities_report)
    return placement.device, placement.dtype
