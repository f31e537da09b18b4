"""The Qwen3-ASR audio encoder without work on padding.

transformers' Qwen3ASREncoder.forward cuts every row's features into 1 s chunks (n_window * 2 mel frames)
and runs its three strided convolutions on all of them, padding chunks included; only afterwards does it
keep the valid positions. In a batch of mixed lengths most chunks can be padding (480 chunks for 75 real
ones in one measured batch). This runs the same modules in the same order on the chunks that hold at least
one valid frame: a fully padded chunk yields no position in the encoder's output, so the result is the
same packed sequence. The attention windows (cu_seqlens) are computed by transformers' own function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.qwen3_asr.modeling_qwen3_asr import get_audio_cu_seqlens


def nonempty_chunks(features_mask: torch.Tensor, chunk_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid frames of every chunk [B * num_chunks], indices of the chunks holding any [K])."""
    size, frames = features_mask.shape
    lengths = features_mask.view(size, frames // chunk_len, chunk_len).sum(-1).reshape(-1).long()
    return lengths, lengths.nonzero().squeeze(-1)


def encode_audio(encoder: nn.Module, projector: nn.Module, features: torch.Tensor,
                 features_mask: torch.Tensor) -> torch.Tensor:
    """features [B, mel, T] (T a multiple of the chunk length, zero beyond each row's frames), mask [B, T]
    -> audio embeddings [N, output_dim]: every row's valid positions, rows in order (what the LLM prompt's
    audio placeholders take)."""
    size, mels, frames = features.shape
    chunk_len = encoder.n_window * 2
    if frames % chunk_len:
        raise ValueError(f"feature length {frames} is not a multiple of the encoder's chunk ({chunk_len})")
    lengths, kept = nonempty_chunks(features_mask, chunk_len)
    cu_seqlens = get_audio_cu_seqlens(lengths, features_mask.sum(-1).long(), encoder.n_window_infer,
                                      encoder.n_window)
    chunks = (features.view(size, mels, frames // chunk_len, chunk_len).permute(0, 2, 1, 3)
              .reshape(-1, 1, mels, chunk_len).index_select(0, kept))  # [K, 1, mel, chunk]
    hidden = F.gelu(encoder.conv2d1(chunks))
    hidden = F.gelu(encoder.conv2d2(hidden))
    hidden = F.gelu(encoder.conv2d3(hidden))  # [K, channels, freq, t]
    count, channels, freq, steps = hidden.shape
    hidden = encoder.conv_out(hidden.permute(0, 3, 1, 2).contiguous().view(count, steps, channels * freq))
    hidden = hidden + encoder.positional_embedding.positional_embedding[:steps].to(hidden.dtype)  # [K, t, d]
    valid = torch.arange(steps, device=hidden.device) < encoder._post_cnn_length(lengths[kept])[:, None]
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, valid.flatten().nonzero().squeeze(-1))
    for layer in encoder.layers:
        hidden = layer(hidden, cu_seqlens)[0]  # [N, d]
    return projector(encoder.ln_post(hidden))
