"""Whisper's decoder passes written out: the calls transformers' WhisperDecoder makes, on the same weights in
the same order, without its per-call plumbing (argument checks, mask building, cache and attention dispatch,
output records) and without the packed layers' own (module calls, the shared q/k/v product's bookkeeping,
reshapes). Three passes: a row's cross-attention keys and values (`fill_cross`), a row's prompt (`prompt`)
and a decode step of every running row (`step`).

Why: on a CPU a pass over one or a few tokens is mostly fixed cost per call. Whisper base int8, 2-core AVX2
EPYC, alternating in one process:
- a step: transformers' forward 13.2-15.0 ms per one-row step; written out with the modules' calls 9.7-10.9 ms;
  with the products and attention called directly 8.6-10.2 ms (4 rows 18.1-19.3 -> 15.8-16.8 ms, 8 rows
  20.9-24.1 -> 17.6-19.2 ms);
- cross-attention keys and values of one row: 38-42 -> 34.5-37.6 ms (the encoder states scaled once for the
  six layers, each product written into the slots in their layout, where transformers copies it twice).

Each row attends on its own, over exactly its own columns (models.row_attention's rule: here the slots' first
columns say which), so this is the path where the model attends row by row (the packed CPU path). A prompt is
one row with no padding (the CPU prefill runs one row at a time). The numbers equal the transformers forward
pass's bit for bit (tests/models/whisper/test_int8.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from models.decoding.kv_slots import KVSlots
from models.fused_projections import FusedSlice
from models.quantized import PackedLinear, row_scaled
from models.whisper.encode import split_heads

Product = Callable[[torch.Tensor], torch.Tensor]  # [n, in] -> [n, out]


def _hooked(module: Any) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _product(linear: Any) -> Product:
    """A layer's product on contiguous [n, in] rows: a packed layer's kernel call itself, else the module
    (also a packed one with hooks: they run)."""
    return linear.rows if isinstance(linear, PackedLinear) and not _hooked(linear) else linear


def _shared(parts: tuple[Any, ...]) -> Any:
    """The one int8 product that these projections are the columns of, in order (none hooked); else None."""
    if not all(isinstance(part, FusedSlice) and not _hooked(part) for part in parts) \
            or len({id(part.shared) for part in parts}) != 1:
        return None
    shared = parts[0].shared
    return shared if [part.index for part in parts] == list(range(len(shared.bounds))) else None


def _projections(*parts: Any) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The projections of [n, d] rows: one shared product where they are fused (models.fused_projections),
    else one product each."""
    shared = _shared(parts)
    if shared is not None:
        product, bounds = _product(shared.packed), shared.bounds

        def columns(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = product(x)  # [n, sum of widths]
            return tuple(out[:, start:stop] for start, stop in bounds)
        return columns
    products = [_product(part) for part in parts]
    return lambda x: tuple(product(x) for product in products)


def _norm(norm: torch.nn.LayerNorm) -> Product:
    if _hooked(norm):
        return norm
    return lambda x: F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class _Layer:
    """One decoder layer's weights as direct calls."""

    def __init__(self, layer: Any) -> None:
        own, cross = layer.self_attn, layer.encoder_attn
        self.heads, self.own_scaling, self.cross_scaling = own.num_heads, own.scaling, cross.scaling
        self.own_norm, self.own_qkv = _norm(layer.self_attn_layer_norm), _projections(own.q_proj, own.k_proj,
                                                                                       own.v_proj)
        self.own_out, self.cross_norm = _product(own.out_proj), _norm(layer.encoder_attn_layer_norm)
        self.cross_q, self.cross_out = _product(cross.q_proj), _product(cross.out_proj)
        self.cross_kv, self.cross_shared = _projections(cross.k_proj, cross.v_proj), _shared((cross.k_proj,
                                                                                               cross.v_proj))
        self.mlp_norm, self.fc1, self.fc2, self.activation = _norm(layer.final_layer_norm), _product(layer.fc1), \
            _product(layer.fc2), layer.activation_fn

    def mlp(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.fc2(self.activation(self.fc1(self.mlp_norm(hidden))))


def _attend_rows(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, firsts: list[int],
                 stop: int | None) -> torch.Tensor:
    """query [n, H, 1, D]; keys / values [slots, H, columns, D]: row r over its columns firsts[r]:stop, as a
    batch of one (the numbers it gets alone) -> [n, H * D]. Scores are scaled in the query, as Whisper does."""
    n = query.shape[0]
    if n == 1:
        out = F.scaled_dot_product_attention(query, keys[:1, :, firsts[0]:stop], values[:1, :, firsts[0]:stop],
                                             scale=1.0)
    else:
        out = torch.cat([F.scaled_dot_product_attention(query[r:r + 1], keys[r:r + 1, :, firsts[r]:stop],
                                                        values[r:r + 1, :, firsts[r]:stop], scale=1.0)
                         for r in range(n)])
    return out.view(n, -1)  # one query per row: [n, H, 1, D] is [n, H * D] in memory


def _attend_each_query(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A prompt's cross-attention, one query per call as models.row_attention computes it (SDPA's numbers for
    a query depend on how many share the call): query [1, H, T, D], keys / values [1, H, S, D] -> [T, H * D]."""
    out = torch.cat([F.scaled_dot_product_attention(query[:, :, index:index + 1], keys, values, scale=1.0)
                     for index in range(query.shape[2])], dim=2)  # [1, H, T, D]
    return out.transpose(1, 2).reshape(query.shape[2], -1)


class WrittenOutDecoder:
    """The passes of one Whisper decoder; built once per session. Packed layers and layer norms are called
    directly, bypassing their modules, unless they carry hooks when it is built."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.layers = [_Layer(layer) for layer in decoder.layers]
        self.final_norm = _norm(decoder.layer_norm)

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed_tokens(tokens) + self.decoder.embed_positions.weight[positions]

    def fill_cross(self, kv: KVSlots, encoded: torch.Tensor) -> None:
        """Every layer's cross-attention keys and values of one row's encoder states [1, S, d], written into
        the slot kv.cross_window points at."""
        slot, states = kv.cross_window.rows.start, encoded[0]
        if kv.cross_window.rows.stop - slot != 1 or encoded.shape[0] != 1:
            raise ValueError("fill_cross writes one row")
        scaled = None
        for layer, cross in zip(self.layers, kv.cross_cache.layers):
            stores = (cross.key_store[slot].transpose(0, 1), cross.value_store[slot].transpose(0, 1))  # [S, H, D]
            # Not fused, or hooked: a product per projection. (Fused ones are int8 with a bias: fuse_projections.)
            if layer.cross_shared is None or _hooked(layer.cross_shared.packed):
                for store, part in zip(stores, layer.cross_kv(states)):
                    store.copy_(part.view(store.shape))
                continue
            packed = layer.cross_shared.packed
            if scaled is None:  # the same input for every layer: its row scales once
                scaled, scale = row_scaled(states)
            raw = packed.scaled_product(scaled)  # [S, 2 H D]
            for store, (start, stop) in zip(stores, layer.cross_shared.bounds):  # bias + raw * scale, in place
                torch.addcmul(packed.bias[start:stop].view(store.shape[1:]), raw[:, start:stop].view(store.shape),
                              scale.view(-1, 1, 1), out=store)

    def prompt(self, kv: KVSlots, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One row's prompt: tokens, positions [1, T], the slots pointed at its columns (kv.window.write) and
        its cross-attention filled -> hidden [T, d] after the final layer norm. Writes its keys and values."""
        window, count = kv.window, tokens.shape[1]
        if tokens.shape[0] != 1 or window.rows.stop - window.rows.start != 1 or window.read != window.write:
            raise ValueError("a written-out prompt is one row over its own columns")
        slot, hidden = window.rows.start, self._embed(tokens, positions)[0]  # [T, d]
        for layer, own, cross in zip(self.layers, kv.cache.layers, kv.cross_cache.layers):
            query, key, value = layer.own_qkv(layer.own_norm(hidden))
            own.key_store[slot, :, window.write] = split_heads(key[None], layer.heads)[0]
            own.value_store[slot, :, window.write] = split_heads(value[None], layer.heads)[0]
            keys, values = own.key_store[slot:slot + 1, :, window.read], own.value_store[slot:slot + 1, :, window.read]
            query = split_heads((query * layer.own_scaling)[None], layer.heads)
            out = F.scaled_dot_product_attention(query, keys, values, is_causal=count > 1, scale=1.0)  # [1, H, T, D]
            hidden = hidden + layer.own_out(out.transpose(1, 2).reshape(count, -1))
            query = split_heads((layer.cross_q(layer.cross_norm(hidden)) * layer.cross_scaling)[None], layer.heads)
            out = _attend_each_query(query, cross.key_store[slot:slot + 1], cross.value_store[slot:slot + 1])
            hidden = layer.mlp(hidden + layer.cross_out(out))
        return self.final_norm(hidden)

    def step(self, kv: KVSlots, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens, positions [n, 1], the slots pointed at the step (KVSlots.point_step) -> hidden [n, d] after
        the final layer norm. Writes each row's new key and value."""
        window, n = kv.window, tokens.shape[0]
        if window.rows != slice(0, n) or len(kv.first) != n:
            raise ValueError("a step runs every running row, in slot order (KVSlots.point_step)")
        stop, cross_firsts = window.read.stop, [0] * n  # row r's history: columns kv.first[r] to stop
        hidden = self._embed(tokens, positions)[:, 0]  # [n, d]
        for layer, own, cross in zip(self.layers, kv.cache.layers, kv.cross_cache.layers):
            query, key, value = layer.own_qkv(layer.own_norm(hidden))
            query = (query * layer.own_scaling).view(n, layer.heads, 1, -1)
            own.key_store[window.rows, :, window.write] = key.view(n, layer.heads, 1, -1)
            own.value_store[window.rows, :, window.write] = value.view(n, layer.heads, 1, -1)
            hidden = hidden + layer.own_out(_attend_rows(query, own.key_store, own.value_store, kv.first, stop))
            query = (layer.cross_q(layer.cross_norm(hidden)) * layer.cross_scaling).view(n, layer.heads, 1, -1)
            hidden = layer.mlp(hidden + layer.cross_out(_attend_rows(query, cross.key_store, cross.value_store,
                                                                     cross_firsts, None)))
        return self.final_norm(hidden)
