"""Row attention (models/row_attention.py): a row's result is the same numbers whatever else is in the call,
for decode steps, left-padded prompts and unmasked cross-attention; plain SDPA is shown not to be, so the
checks can fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.row_attention import row_attention_forward


class _Cross(torch.nn.Module):
    is_causal = False
    is_decoder = True  # a decoder's cross-attention (transformers' WhisperAttention flags)


class _Self(torch.nn.Module):
    is_causal = True


def _qkv(batch: int, queries: int, keys: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, 6, n, 64, generator=generator) for n in (queries, keys, keys))


def test_plain_sdpa_depends_on_how_many_queries_share_the_call():
    q, k, v = _qkv(1, 5, 1500)
    assert not torch.equal(F.scaled_dot_product_attention(q, k, v)[:, :, -1:],
                           F.scaled_dot_product_attention(q[:, :, -1:], k, v))


def test_cross_attention_of_a_padded_prompt_equals_the_prompt_alone():
    q, k, v = _qkv(2, 5, 1500)
    batched, _ = row_attention_forward(_Cross(), q, k, v, None)  # [2, 5, H, D]
    for row in range(2):
        alone, _ = row_attention_forward(_Cross(), q[row:row + 1, :, -2:], k[row:row + 1], v[row:row + 1], None)
        assert torch.equal(batched[row, -2:], alone[0])  # the row's own (last) two queries


def test_a_left_padded_prompt_attends_like_the_prompt_alone():
    q, k, v = _qkv(2, 4, 4, seed=1)
    own = [4, 2]  # row 1 is left-padded by two positions
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    for row, length in enumerate(own):
        start = 4 - length
        mask[row, 0, start:, start:] = torch.tril(torch.ones(length, length, dtype=torch.bool))
    batched, _ = row_attention_forward(_Self(), q, k, v, mask)
    alone, _ = row_attention_forward(_Self(), q[1:, :, 2:], k[1:, :, 2:], v[1:, :, 2:], None)
    assert torch.equal(batched[1, 2:], alone[0])
