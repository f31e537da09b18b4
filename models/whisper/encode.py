"""Whisper's encoder written out for one 30 s window: the calls transformers' WhisperEncoder makes, on the
same modules in the same order, except that the attention reads its queries, keys and values as strided views
of the projections instead of contiguous copies per head, and the hidden states are laid out row-major once
(transformers carries the convolution's transposed layout through every layer).

Why: on a CPU the copies are three passes over [1500, d] per layer, and torch's flash attention reads the
strided heads as fast (it walks rows of one head either way): one layer's attention 37-38 -> 34.5 ms. The
transposed layout made each residual add 1.3-1.5 ms instead of 0.17 and each layer norm copy its input. Whisper
base int8, 2-core AVX2 EPYC, whole windows alternating in one process: 510-530 -> 479-492 ms on 2 threads,
930 -> 884 ms on one. The output is the same as the transformers forward pass's bit for bit
(tests/models/whisper/test_int8.py).

Used where the model attends row by row (models.row_attention, the packed CPU path), which encodes one window
per call; there the attention of a window is exactly one SDPA call over all its frames.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[n, T, d] -> [n, heads, T, d / heads] as a view: the numbers WhisperAttention's contiguous copy holds
    (SDPA reads strided heads, and a cache copies them into its slots); a fused projection's columns stay
    strided."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _attention(attention: Any, normed: torch.Tensor) -> torch.Tensor:
    """WhisperAttention over one window, scores scaled in the query as it does: [1, T, d] -> [1, T, d]."""
    heads = attention.num_heads
    query = split_heads(attention.q_proj(normed) * attention.scaling, heads)
    key, value = split_heads(attention.k_proj(normed), heads), split_heads(attention.v_proj(normed), heads)
    out = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # [1, H, T, D]
    return attention.out_proj(out.transpose(1, 2).reshape(normed.shape))


def encode_window(encoder: Any, features: torch.Tensor) -> torch.Tensor:
    """features [1, n_mels, 3000] -> encoder states [1, 1500, d] (after the final layer norm)."""
    if features.shape[0] != 1:
        raise ValueError(f"encode_window takes one window, got {features.shape[0]}")
    embeds = F.gelu(encoder.conv2(F.gelu(encoder.conv1(features)))).permute(0, 2, 1)  # [1, 1500, d]
    positions = torch.arange(encoder.embed_positions.num_embeddings, device=embeds.device)
    # transformers keeps the permuted layout: every residual add then mixes layouts and every layer norm copies
    # (one add 1.3-1.5 ms against 0.17 contiguous); laid out once here, the values are the same
    hidden = (embeds + encoder.embed_positions(positions)).contiguous()
    for layer in encoder.layers:
        hidden = hidden + _attention(layer.self_attn, layer.self_attn_layer_norm(hidden))
        hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
    return encoder.layer_norm(hidden)
