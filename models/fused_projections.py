"""Projections that read the same input (an attention's query, key and value) packed as ONE int8 product.

Why: a decode step runs every packed Linear on one row per running segment, where a call's fixed cost (the
per-row scales, FBGEMM's input quantisation, a parallel region) is most of its time. Whisper base, 1 row,
AVX2, 2 threads: q, k and v as three packed layers 380 us, as one 512 -> 1536 product 114 us; at 1500 rows
(the encoder) the two cost the same. A one-row step of Whisper base: 16.1 -> 13.3 ms.

Exactly the same numbers as separate layers: the int8 weights are quantised per output channel (the
concatenation changes no channel's scale), the activations per row (the same input, the same scales), the
products are exact int32 and dequantisation is elementwise. A missing bias (Whisper's k_proj) is zeros in the
fused bias: bias + out * scale then equals out * scale exactly.

Each original module is replaced by a `FusedSlice` that returns its columns of the shared product. The product
is computed when a slice asks for an input that is not the one it was last computed for (identity: the model
calls the three projections on the same tensor, and nothing changes that tensor in between), and released once
every slice has taken its part, so no activation outlives the layer's forward pass. That state is kept per
thread: the engine may run one model's encoder on two threads at once (app/engine/prefill_ahead.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

import torch
from torch import nn

from models.quantized import PackedLinear


class SharedProduct(nn.Module):
    """One packed product over the concatenated weights of several projections; hands out each one's columns."""

    def __init__(self, packed: PackedLinear, widths: Sequence[int], parameters: int) -> None:
        super().__init__()
        self.packed = packed
        self.parameters_replaced = parameters  # weights and biases of the projections (no zero-filled bias)
        self.bounds = [(sum(widths[:i]), sum(widths[:i + 1])) for i in range(len(widths))]
        self._state = threading.local()  # this thread's input, its product and the parts taken

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Projection `index` of x: [..., in] -> [..., width] (a view into the shared product)."""
        state = self._state
        if getattr(state, "input", None) is not x or index in state.taken:
            state.input, state.output, state.taken = x, self.packed(x), set()
        state.taken.add(index)
        start, stop = self.bounds[index]
        out = state.output[..., start:stop]
        if len(state.taken) == len(self.bounds):  # every part delivered: hold nothing until the next input
            state.input = state.output = None
        return out


class FusedSlice(nn.Module):
    """Stands where one projection was; `in_features` / `out_features` as the Linear it replaces."""

    def __init__(self, shared: SharedProduct, index: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.shared, self.index = shared, index
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.part(x, self.index)


def _concatenated(linears: Sequence[nn.Linear]) -> nn.Linear:
    """One Linear whose output is the given Linears' outputs side by side (zeros for a missing bias)."""
    fused = nn.Linear(linears[0].in_features, sum(m.out_features for m in linears), bias=True)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight.detach().float() for m in linears]))
        fused.bias.copy_(torch.cat([m.bias.detach().float() if m.bias is not None
                                    else torch.zeros(m.out_features) for m in linears]))
    return fused


def fuse_projections(model: nn.Module, groups: Sequence[tuple[str, tuple[str, ...]]],
                     packs: Callable[[str, nn.Linear], bool]) -> int:
    """groups: (module name pattern, its children that read one input). In every module whose name matches a
    pattern (re.search) and that has all of its children as float Linears of one input width, each of which
    `packs(name, linear)` would pack, replace them by slices of one int8 product. Returns how many Linears
    were fused. Run before packing the rest (the float weights are needed here)."""
    fused = 0
    for name, module in list(model.named_modules()):
        for pattern, group in groups:
            if not re.search(pattern, name):
                continue
            linears = [getattr(module, child, None) for child in group]
            if not all(type(m) is nn.Linear for m in linears) or len({m.in_features for m in linears}) != 1:
                continue
            if not all(packs(f"{name}.{child}" if name else child, m) for child, m in zip(group, linears)):
                continue
            shared = SharedProduct(PackedLinear.from_linear(_concatenated(linears), "int8"),
                                   [m.out_features for m in linears], sum(p.numel() for m in linears
                                                                          for p in m.parameters()))
            for index, (child, linear) in enumerate(zip(group, linears)):
                setattr(module, child, FusedSlice(shared, index, linear.in_features, linear.out_features))
            fused += len(group)
    return fused
