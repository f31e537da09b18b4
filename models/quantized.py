"""Linear layers with int8 or fp16 weights for CPUs without native bf16, that keep batch invariance.

The kernels are FBGEMM's, reached through `torch.ops.quantized` (the ops `quantize_dynamic` uses):
`linear_dynamic` (int8 weights, activations quantised to uint8 on the fly, int32 accumulation) and
`linear_dynamic_fp16` (fp16 weights widened in the kernel, fp32 activations and accumulation).

The catch with FBGEMM's dynamic int8: it quantises the activations with ONE scale for the whole input,
from the input's min and max. A row's result then depends on the other rows in its batch, and a segment
could decode to other tokens batched than alone (the service guarantees it does not). Kinds here:

- "int8" (the service's int8 path): per-row activation scales. Each row is divided by its own largest
  magnitude, so every row spans [-1, 1], and the product runs with one fixed activation scale and zero
  point for every batch: those FBGEMM's dynamic quantisation picks for [-1, 1] at its reduced range
  (2/127 and 64; `quantized::linear_with_input_q_dq_qweight_dq_output_fp32` takes them as given, the
  same numbers as `linear_dynamic` on the rows plus an anchor row [-1, 1, 0, ...], without the anchor's
  copy and min/max pass). Quantisation is elementwise, the product is exact in int32, dequantisation is
  elementwise: row i's output is a function of row i alone, bit for bit, at any batch size. The row's
  scale is multiplied back and the bias added after the kernel. Weights: symmetric int8 per output
  channel. Activations stay within 7 bits plus the one rounding step at +1: the kernel's pairwise int16
  sums cannot saturate without AVX512-VNNI either, so the integer results are the same on AVX2 and
  AVX512 machines.
- "fp16": fp16 weights, fp32 activations (about fp32's accuracy; rows are independent as in fp32).
- "int8-tensor": FBGEMM's own per-tensor dynamic quantisation, as `quantize_dynamic` does. NOT batch
  invariant: kept only so the benchmark can measure what giving up the guarantee would buy.

`kernels_missing()` says why these cannot run on the installed torch (ops or engine missing), or None.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

KINDS = ("int8", "fp16", "int8-tensor")
_SMALLEST_NORMAL = torch.finfo(torch.float32).tiny
_OPS = ("linear_prepack", "linear_dynamic", "linear_prepack_fp16", "linear_dynamic_fp16",
        "linear_with_input_q_dq_qweight_dq_output_fp32")
# FBGEMM's dynamic activation parameters for inputs spanning [-1, 1] at its reduced range (qmin 0, qmax 127):
# scale (max - min) / 127, zero point 0 - min / scale rounded; every per-row-scaled input spans [-1, 1].
SPAN_SCALE = 2.0 / 127.0
SPAN_ZERO_POINT = 64


def kernels_missing() -> str | None:
    """None when the FBGEMM linear kernels work on this torch and CPU, else the reason they do not."""
    missing = [name for name in _OPS if not hasattr(torch.ops.quantized, name)]
    if missing:
        return f"torch {torch.__version__} has no torch.ops.quantized.{', '.join(missing)}"
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return f"torch {torch.__version__} was built without the FBGEMM quantized engine"
    try:  # the ops can exist and still fail (a CPU without AVX2): try one tiny product of each kind
        probe = nn.Linear(4, 2)
        for kind in ("int8", "fp16"):
            PackedLinear.from_linear(probe, kind)(torch.ones(1, 4))
    except RuntimeError as exc:
        return f"FBGEMM linear kernels fail on this machine: {exc}"
    return None


@contextlib.contextmanager
def _fbgemm_engine() -> Iterator[None]:
    """Prepack with FBGEMM whatever the process-wide engine is (x86's default also packs with FBGEMM for
    linear layers; onednn would pack with other numerics)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        with warnings.catch_warnings():  # quantized tensor creation is deprecated, the FBGEMM kernels are not
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.quantized.engine = previous


def _int8_per_channel(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel: [out, in] float -> quantized qint8 tensor."""
    scales = weight.abs().amax(dim=1).double() / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    return torch.quantize_per_channel(weight.float().contiguous(), scales, zero_points, 0, torch.qint8)


def row_scaled(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [M, in] divided by their largest magnitudes, and those magnitudes [M, 1] (abs then amax, exact: at
    1500 x 512 0.17 ms against 1.1 for aminmax and 1.3 for vector_norm(inf), 2 threads, AVX2). An all-zero row
    gets the smallest normal float: it divides to zeros, and zeros times it give the bias."""
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=_SMALLEST_NORMAL)
    return rows / scale, scale


class PackedLinear(nn.Module):
    """A Linear whose weight lives packed for FBGEMM in int8 or fp16; fp32 in, fp32 out, CPU only.

    It keeps `in_features` / `out_features` like nn.Linear but has no `.weight` tensor (the float weight is
    dropped to save its memory); models.lora reads the shape from these attributes."""

    def __init__(self, in_features: int, out_features: int, kind: str, packed: object,
                 bias: torch.Tensor | None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown packed linear kind {kind!r}: use one of {KINDS}")
        self.in_features, self.out_features, self.kind = in_features, out_features, kind
        self.packed = packed
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, kind: str) -> PackedLinear:
        if linear.in_features < 2:
            raise ValueError("packed linears need at least 2 input features")
        weight = linear.weight.detach().float()
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        with torch.no_grad(), _fbgemm_engine():
            if kind == "fp16":  # bias inside the kernel: rows stay independent
                packed = torch.ops.quantized.linear_prepack_fp16(weight.contiguous(), bias)
            elif kind == "int8-tensor":
                packed = torch.ops.quantized.linear_prepack(_int8_per_channel(weight), bias)
            else:  # int8 per row: the bias is added after the row scale is multiplied back
                packed = torch.ops.quantized.linear_prepack(_int8_per_channel(weight), None)
        return cls(linear.in_features, linear.out_features, kind, packed, bias if kind == "int8" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference only (the kernels have no backward): detached as no_grad() would, without its ~10 us per
        # call (a decode step makes ~30 of these calls; the models run under inference_mode anyway).
        rows = x.reshape(-1, self.in_features)  # [M, in]
        if rows.requires_grad:
            rows = rows.detach()
        if rows.dtype != torch.float32:
            raise TypeError(f"packed linear layers take float32 input, got {rows.dtype}")
        return self.rows(rows.contiguous()).view(*x.shape[:-1], self.out_features)

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The product on contiguous float32 rows [M, in] -> [M, out], without forward's checks and reshapes
        (the written-out Whisper passes call it directly: models/whisper/written_out.py)."""
        if self.kind == "fp16":
            return torch.ops.quantized.linear_dynamic_fp16(rows, self.packed)
        if self.kind == "int8-tensor":
            return torch.ops.quantized.linear_dynamic(rows, self.packed, True)
        return self._per_row(rows)

    def _per_row(self, rows: torch.Tensor) -> torch.Tensor:
        # Six torch calls on purpose: a decode step runs ~30 of these on one or a few rows, where each call's
        # dispatch (~5 us on these CPUs) costs more than its arithmetic.
        scaled, scale = row_scaled(rows)
        out = self.scaled_product(scaled)
        if self.bias is None:
            return out.mul_(scale)
        return torch.addcmul(self.bias, out, scale, out=out)  # bias + out * scale in one pass

    def scaled_product(self, scaled: torch.Tensor) -> torch.Tensor:
        """The int8 kernel on rows already divided by their scales (`row_scaled`): [M, in] -> [M, out], before
        the scales are multiplied back and the bias added. One input's scaling can serve several layers."""
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32.default(
            scaled, SPAN_SCALE, SPAN_ZERO_POINT, self.packed)  # every row in [-1, 1]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}, "
                f"bias={self.bias is not None}")


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(out_features, in_features) of a Linear, packed or not (torch's own dynamic-quantised Linear, as
    `quantize_dynamic` leaves it, included); None for any other module."""
    if isinstance(module, nn.Linear):
        return tuple(module.weight.shape)
    if isinstance(module, PackedLinear) or _is_torch_dynamic_linear(module):
        return module.out_features, module.in_features
    return None


def _is_torch_dynamic_linear(module: nn.Module) -> bool:
    dynamic = getattr(getattr(getattr(torch.ao, "nn", None), "quantized", None), "dynamic", None)
    return dynamic is not None and isinstance(module, dynamic.Linear)


@dataclass(frozen=True)
class LinearPlan:
    """Where a model's Linear layers may be packed, by module name: the first rule whose pattern matches
    decides; its number is the smallest side a layer must have to be packed (measured per model part:
    below it int8 does not pay at that part's sizes), None = never. Layers no rule matches stay float."""

    name: str
    rules: tuple[tuple[str, int | None], ...]

    def packs(self, name: str, linear: nn.Linear) -> bool:
        for pattern, min_features in self.rules:
            if re.search(pattern, name):
                return min_features is not None and min(linear.in_features, linear.out_features) >= min_features
        return False

    def chooser(self, kind: str) -> Callable[[str, nn.Linear], str | None]:
        if kind not in KINDS:
            raise ValueError(f"unknown packed linear kind {kind!r}: use one of {KINDS}")
        return lambda name, linear: kind if self.packs(name, linear) else None


def quantize_linears(model: nn.Module, choose: Callable[[str, nn.Linear], str | None]) -> dict[str, int]:
    """Replace every nn.Linear for which `choose(name, module)` names a kind by a PackedLinear of that kind,
    in place; returns how many layers got each kind. The float weights of replaced layers are released
    (a weight tied to an embedding stays with the embedding). Hooks are not carried over: attach adapters
    after quantising (a Linear with hooks is refused)."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8/fp16 packed linear layers run on the CPU only")
    counts: dict[str, int] = {}
    for name, module in list(model.named_modules()):
        kind = choose(name, module) if type(module) is nn.Linear else None
        if kind is None:
            continue
        if module._forward_hooks or module._forward_pre_hooks:
            raise RuntimeError(f"{name} has hooks: quantise the model before attaching adapters")
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, PackedLinear.from_linear(module, kind))
        counts[kind] = counts.get(kind, 0) + 1
    return counts
