"""One Whisper decode step written out: the calls transformers' WhisperDecoder makes for one new token per
row, on the same modules in the same order, without its per-call plumbing (argument checks, mask building,
cache and attention dispatch, output records).

Why: on a CPU a decode step of one or a few rows is mostly fixed cost per call. Whisper base int8, 2-core AVX2
EPYC, 25 steps at positions 5-30, the same session either way: 1 row 13.2-15.0 -> 11.1-13.2 ms, 8 rows
34.1-38.3 -> 30.8-32.4 ms, with the same tokens and log-probabilities.

Used where the model attends row by row (models.row_attention, the packed CPU path); its scores equal the
transformers forward pass's bit for bit (tests/models/whisper/test_int8.py).
"""

from __future__ import annotations

from typing import Any

import torch

from models.decoding.kv_slots import KVSlots
from models.row_attention import row_attention_forward
from models.whisper.encode import split_heads


def _attend(attention: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            mask: torch.Tensor | None) -> torch.Tensor:
    """WhisperAttention's call after its projections: scores scaled in the query, as it does; [n, 1, d]."""
    out, _ = row_attention_forward(attention, query, key, value, mask, scaling=1.0)
    return attention.out_proj(out.reshape(query.shape[0], 1, -1).contiguous())


def decode_step(decoder: Any, kv: KVSlots, tokens: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """tokens, positions [n, 1]; mask [n, 1, 1, kv] (KVSlots.point_step, already pointed) -> hidden [n, 1, d]
    after the decoder's final layer norm. Writes each layer's new key and value into the slots."""
    hidden = decoder.embed_tokens(tokens) + decoder.embed_positions.weight[positions]  # [n, 1, d]
    for index, layer in enumerate(decoder.layers):
        own, cross = layer.self_attn, layer.encoder_attn
        normed = layer.self_attn_layer_norm(hidden)
        query = split_heads(own.q_proj(normed) * own.scaling, own.num_heads)
        key, value = kv.cache.layers[index].update(split_heads(own.k_proj(normed), own.num_heads),
                                                   split_heads(own.v_proj(normed), own.num_heads))
        hidden = hidden + _attend(own, query, key, value, mask)
        normed = layer.encoder_attn_layer_norm(hidden)
        query = split_heads(cross.q_proj(normed) * cross.scaling, cross.num_heads)
        slots = kv.cross_cache.layers[index]
        hidden = hidden + _attend(cross, query, slots.keys, slots.values, None)
        normed = layer.final_layer_norm(hidden)
        hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(normed)))
    return decoder.layer_norm(hidden)
