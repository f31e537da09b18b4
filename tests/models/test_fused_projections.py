"""Projections of one input packed as one int8 product (models/fused_projections.py): the same numbers as
separate packed layers, bit for bit (a missing bias included); only the named modules fuse; a new input is
recomputed and nothing is held once every part is delivered; the Whisper plan fuses self-attention's q, k, v
and cross-attention's k, v, never the cross-attention's query (it reads another input)."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from models.fused_projections import FusedSlice, fuse_projections
from models.linear_plans import WHISPER, WHISPER_FUSED, pack_linears
from models.quantized import PackedLinear, kernels_missing
from tests.models.whisper import tiny_random_whisper

pytestmark = pytest.mark.skipif(kernels_missing() is not None, reason=f"no FBGEMM kernels: {kernels_missing()}")

GROUPS = ((r"attn$", ("q_proj", "k_proj", "v_proj")),)


class _Attention(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.q_proj, self.v_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width, bias=False)  # as Whisper's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.attn, self.other = _Attention(), _Attention()


def _separately_packed(model: _Model) -> _Model:
    copy = _Model()
    copy.load_state_dict(model.state_dict())
    for module in (copy.attn, copy.other):
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(module, name, PackedLinear.from_linear(getattr(module, name), "int8"))
    return copy


def test_one_product_gives_the_separate_layers_numbers_bit_for_bit():
    model = _Model()
    separate = _separately_packed(model)
    assert fuse_projections(model, GROUPS, lambda name, linear: True) == 3
    assert isinstance(model.attn.q_proj, FusedSlice) and type(model.other.q_proj) is nn.Linear  # "other" not named
    for rows in (1, 3, 40):
        x = torch.randn(2, rows, 64) * torch.logspace(-2, 2, rows)[:, None]
        assert torch.equal(model.attn(x), separate.attn(x))


def test_layers_the_plan_would_not_pack_are_not_fused():
    model = _Model()
    assert fuse_projections(model, GROUPS, lambda name, linear: not name.endswith("v_proj")) == 0
    assert type(model.attn.q_proj) is nn.Linear


def test_a_new_input_is_recomputed_and_nothing_is_held_after_the_last_part():
    model = _Model()
    fuse_projections(model, GROUPS, lambda name, linear: True)
    separate = _separately_packed(_Model())  # the same seed: the same weights as `model` had
    first, second = torch.randn(5, 64), torch.randn(5, 64)
    query = model.attn.q_proj(first)
    assert torch.equal(model.attn.k_proj(second), separate.attn.k_proj(second))  # another input: recomputed
    assert torch.equal(query, separate.attn.q_proj(first))
    shared = model.attn.q_proj.shared
    model.attn.q_proj(first), model.attn.k_proj(first), model.attn.v_proj(first)
    assert shared._state.input is None and shared._state.output is None
    again = model.attn.q_proj(first)  # the same tensor again, after a complete pass: computed afresh
    assert torch.equal(again, separate.attn.q_proj(first))


def test_two_threads_interleaving_their_projections_each_compute_their_own_product_once():
    """The engine runs an encoder on two threads at once (app/engine/prefill_ahead.py). Order forced here:
    A's query, B's query, A's key and value, B's key and value; each thread's parts come from its own input,
    and each input's product is computed once (shared state would recompute it on every switch)."""
    model = _Model()
    fuse_projections(model, GROUPS, lambda name, linear: True)
    separate = _separately_packed(_Model())
    shared = model.attn.q_proj.shared
    products = []
    shared.packed.register_forward_hook(lambda module, args, out: products.append(args[0]))
    inputs = [torch.randn(3, 64), torch.randn(3, 64)]
    turns = [threading.Event() for _ in range(4)]  # A's query, B's query, A's rest, B's rest
    got = {}

    def project(index: int) -> None:
        x, mine = inputs[index], turns[index::2]
        assert mine[0].wait(timeout=30)
        query = model.attn.q_proj(x)
        turns[turns.index(mine[0]) + 1].set()
        assert mine[1].wait(timeout=30)
        got[index] = (query, model.attn.k_proj(x), model.attn.v_proj(x))
        if index == 0:
            turns[3].set()

    threads = [threading.Thread(target=project, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    turns[0].set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(products) == 2
    for index, x in enumerate(inputs):
        expected = (separate.attn.q_proj(x), separate.attn.k_proj(x), separate.attn.v_proj(x))
        assert all(torch.equal(a, b) for a, b in zip(got[index], expected))


def test_the_whisper_plan_fuses_self_attention_and_cross_attention_keys_and_values():
    model = tiny_random_whisper()
    summary = pack_linears(model, WHISPER, "int8", WHISPER_FUSED)
    decoder = model.model.decoder.layers[0]
    assert isinstance(model.model.encoder.layers[0].self_attn.q_proj, FusedSlice)
    assert isinstance(decoder.self_attn.v_proj, FusedSlice) and isinstance(decoder.encoder_attn.k_proj, FusedSlice)
    assert isinstance(decoder.encoder_attn.q_proj, PackedLinear)  # reads the decoder: its own product
    assert summary.endswith("left float32, 8 of them fused by shared input")
    fp16 = tiny_random_whisper()
    pack_linears(fp16, WHISPER, "fp16", WHISPER_FUSED)  # fusion is an int8 product: fp16 layers stay apart
    assert not any(isinstance(module, FusedSlice) for module in fp16.modules())


