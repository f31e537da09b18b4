"""Pick the device and dtype a model runs on: CUDA + bf16 when there is a GPU, else CPU + fp32.

Explicit requests are honoured but validated, so a misconfigured deployment fails at startup with a clear
message instead of silently running somewhere else.
"""

from __future__ import annotations

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


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


def _parse_dtype(dtype: str, device: torch.device, bf16_supported: bool) -> torch.dtype:
    name = dtype.strip().lower()
    if name == "auto":
        if device.type == "cpu":
            return torch.float32
        return torch.bfloat16 if bf16_supported else torch.float16
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'")
    chosen = _DTYPES[name]
    if device.type == "cpu" and chosen != torch.float32:
        # CPU half-precision kernels are slow or missing for parts of the model: refuse rather than crawl.
        raise ValueError(f"dtype {dtype!r} on CPU is refused: use float32 on CPU (or run on a CUDA device)")
    if chosen == torch.bfloat16 and not bf16_supported:
        raise ValueError(f"dtype {dtype!r} was requested but this GPU does not support bfloat16: use float16")
    return chosen


def select_device_and_dtype(
    device: str = "auto",
    dtype: str = "auto",
    cuda_available: bool | None = None,
    bf16_supported: bool | None = None,
) -> tuple[torch.device, torch.dtype]:
    """Resolve ("auto"|"cpu"|"cuda[:N]", "auto"|"float32"|"bfloat16"|"float16") to a torch device and dtype.

    `cuda_available` / `bf16_supported` default to what torch reports; tests inject them.
    Raises ValueError for a request this machine cannot honour.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    resolved_device = _parse_device(device, cuda_available)
    if bf16_supported is None:
        bf16_supported = resolved_device.type == "cuda" and torch.cuda.is_bf16_supported()
    return resolved_device, _parse_dtype(dtype, resolved_device, bf16_supported)
