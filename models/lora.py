"""Row-gated LoRA on an unmodified model: y = W x + g ⊙ B (A x), g = 1 for robust rows, 0 for base rows.

The deltas are added by forward hooks on the target Linear modules, so the base weights are never touched
(no in-place merge/unmerge toggling between batches) and one batch can mix base and robust rows. The delta
is computed only on the robust rows and added with index_add_, so base rows get the plain model's output.

On a model whose Linears are packed (int8 or fp16 weights, models.quantized) the hooks are the same: the
delta stays factored in float32, computed from the layer's float input, and added to its output.

A "row" is one item of the batch, but the modules see it in three shapes (Qwen3-ASR, transformers ≥ 5.13):
- text:   language-model Linears see [B, T, d]: row i is x[i];
- chunks: the encoder's conv_out sees [B * num_chunks, t, c*f]: chunk k belongs to row k // num_chunks;
- tokens: encoder layers and the projector see the packed valid positions [N, d] of all chunks in order,
          each chunk contributing `post_cnn_length(valid frames of the chunk)` positions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.quantized import linear_shape

Location = Literal["text", "chunks", "tokens"]


@dataclass
class LoRAPair:
    """One module's folded adapter: delta W = B @ A, every scale already folded into B."""

    A: torch.Tensor  # [rank, in_features]
    B: torch.Tensor  # [out_features, rank]

    def delta(self) -> torch.Tensor:
        return self.B @ self.A  # [out, in]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.A.T) @ self.B.T  # [..., in] -> [..., out]


class RowGate:
    """The rows of the current batch that take the robust path, in the three shapes the modules see."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)  # where the indices live: the hooks use them without a copy
        self.robust: torch.Tensor | None = None  # [B] bool on the CPU, None outside a rows() context
        self.active = False  # any robust row: decided once per batch, not in every hook call
        self._indices: dict[Location, torch.Tensor] = {}

    def set_rows(self, robust: Sequence[bool]) -> None:
        self.robust = torch.tensor(list(robust), dtype=torch.bool)
        self.active = bool(self.robust.any())
        self._indices = {"text": self.robust.nonzero().squeeze(-1).to(self.device)}

    def clear(self) -> None:
        self.robust, self.active, self._indices = None, False, {}

    def set_audio_layout(self, features_mask: torch.Tensor, chunk_len: int, post_cnn_length,
                         skip_empty_chunks: bool = False) -> None:
        """Derive chunk and token rows from the encoder's input mask [B, T] exactly as the encoder packs;
        `skip_empty_chunks`: the convolutions see only chunks holding valid frames
        (models.qwen3_asr.encoder), not every chunk (transformers' forward)."""
        if self.robust is None:
            return
        size, frames = features_mask.shape
        if size != len(self.robust):
            raise RuntimeError(f"adapter rows were set for {len(self.robust)} items, the encoder got {size}")
        num_chunks = frames // chunk_len
        chunk_rows = torch.arange(size).repeat_interleave(num_chunks)  # [B * num_chunks]
        chunk_frames = features_mask.view(size, num_chunks, chunk_len).sum(-1).reshape(-1).long().cpu()
        token_rows = chunk_rows.repeat_interleave(post_cnn_length(chunk_frames))  # [N]
        if skip_empty_chunks:
            chunk_rows = chunk_rows[chunk_frames > 0]  # [K]
        self._indices["chunks"] = self.robust[chunk_rows].nonzero().squeeze(-1).to(self.device)
        self._indices["tokens"] = self.robust[token_rows].nonzero().squeeze(-1).to(self.device)

    def indices(self, location: Location, leading: int) -> torch.Tensor | None:
        """Positions along dim 0 that are robust; None when there are none (the common all-base case)."""
        if not self.active:
            return None
        found = self._indices.get(location)
        if found is None:
            raise RuntimeError(f"adapter gate for {location!r} inputs is not set up for this batch")
        if location == "text" and leading != len(self.robust):
            raise RuntimeError(f"adapter rows were set for {len(self.robust)} items, a module got {leading}")
        return found


class GatedLoRAHook:
    """Forward hook adding B(Ax) to the robust rows of one Linear's output."""

    def __init__(self, pair: LoRAPair, gate: RowGate, location: Location) -> None:
        self.pair, self.gate, self.location = pair, gate, location

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        rows = self.gate.indices(self.location, output.shape[0])
        if rows is None:
            return output
        x = inputs[0]
        if len(rows) == output.shape[0]:  # every row robust: no gather/scatter
            return output.add_(self.pair.apply(x).to(output.dtype))
        delta = self.pair.apply(x.index_select(0, rows))  # [k, ..., out]
        return output.index_add_(0, rows, delta.to(output.dtype))  # in place: no copy of the whole output


def check_pair_fits(name: str, module: nn.Module, pair: LoRAPair) -> None:
    """A module can take a pair only if it is a Linear (float, or packed int8/fp16: models.quantized) whose
    shape matches B @ A."""
    expected = linear_shape(module)
    if expected is None:
        raise TypeError(f"{name}: LoRA targets must be Linear modules, found {type(module).__name__}")
    got = (pair.B.shape[0], pair.A.shape[1])
    if got != expected or pair.A.shape[0] != pair.B.shape[1]:
        raise ValueError(f"{name}: adapter shapes A{tuple(pair.A.shape)} B{tuple(pair.B.shape)} do not fit "
                         f"weight {expected}")


def pair_placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype the pair must have to add to this module's output: its weight's; a packed Linear
    takes and returns float32 on the CPU."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device, weight.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def gated_rows(gate: RowGate, robust: Sequence[bool]) -> Iterator[None]:
    gate.set_rows(robust)
    try:
        yield
    finally:
        gate.clear()
