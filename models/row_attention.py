"""Attention that computes each batch row on its own: the same numbers alone and batched, with any thread count.

torch's CPU scaled_dot_product_attention splits its work across threads by the batch's shape: with 2
threads a decode step (one query per row) of a batch of 3 rows gives row 0 a result that differs from the
same row alone in the last bits (measured, torch 2.13). In float32 that is noise; with int8 layers
(models/quantized.py) it is not: a value on a quantisation boundary moves one step, and the step grows
through the layers (a token's log-probability measured -0.82 alone and -0.41 batched, Whisper base).

Here every row runs as a batch of one over exactly its own positions: the keys and values its mask shows
(a contiguous run of columns ending at the newest one, as models.decoding.kv_slots lays rows out) and its
own queries (a left-padded prompt's real tokens are the last ones). Alone, a row is that same call on the
same numbers. Unmasked non-causal attention (Whisper's cross-attention in a prompt pass) runs one query per
call, since SDPA's result for a query depends on how many queries share the call. Rows whose mask is not of that shape run masked, as plain SDPA does (correct, not exact).

`use_row_attention(config)` switches a (sub-)config to it: registered under "row_sdpa" with the sdpa mask
builder, so transformers treats it as sdpa everywhere else.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "row_sdpa"


def _window(mask: torch.Tensor | None, row: int, queries: int, keys: int, causal: bool) -> tuple[int, int, bool] | None:
    """(first key column, first query, causal) of a row's own positions; None: not the expected shape."""
    if mask is None:
        return (0, 0, causal and queries > 1) if not causal or queries in (1, keys) else None
    if mask.dtype != torch.bool:
        return None
    last = mask[row, 0, -1]  # [kv] the row's newest query sees every key of the row
    first = int(last.to(torch.uint8).argmax())
    if not bool(last[first:].all()):
        return None
    own = keys - first
    if queries == 1:
        return first, 0, False
    if own > queries or not bool(mask[row, 0, queries - own, first]) or (
            own > 1 and bool(mask[row, 0, queries - own, first + 1])):
        return None  # not a causal prompt whose first real token sees only itself
    return first, queries - own, own > 1


_last: dict[str, Any] = {}  # the windows of the last mask seen: every layer of a forward pass gets the same mask


def _windows(mask: torch.Tensor | None, batch: int, queries: int, keys: int,
             causal: bool) -> list[tuple[int, int, bool] | None]:
    signature = (batch, queries, keys, causal)
    if mask is not None and _last.get("mask") is mask and _last.get("signature") == signature:
        return _last["windows"]
    windows = [_window(mask, row, queries, keys, causal) for row in range(batch)]
    if mask is not None:
        _last.update(mask=mask, signature=signature, windows=windows)
    return windows


def _cross_prompt(module: torch.nn.Module, mask: torch.Tensor | None, causal: bool, queries: int) -> bool:
    """A decoder's cross-attention over the encoder's frames in a prompt pass."""
    return mask is None and not causal and queries > 1 and bool(getattr(module, "is_decoder", False))


def _row_kv(key: torch.Tensor, value: torch.Tensor, row: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    k, v = key[row:row + 1], value[row:row + 1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return k, v


def row_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query [B, H, q, D], key / value [B, Hkv, kv, D], mask [B, 1, q, kv] bool or None -> ([B, q, H, D], None)."""
    batch, heads, queries, _ = query.shape
    groups = heads // key.shape[1]
    causal = bool(getattr(module, "is_causal", False) if is_causal is None else is_causal)
    windows = _windows(attention_mask, batch, queries, key.shape[2], causal)
    cross_prompt = _cross_prompt(module, attention_mask, causal, queries)
    if batch == 1 and windows[0] is not None and windows[0][:2] == (0, 0) and not cross_prompt:
        # One row over all of its positions (an encoder's clip, a one-row step): the per-row call below as it
        # is, without filling a zeroed buffer and copying the result into it
        k, v = _row_kv(key, value, 0, groups)
        out = F.scaled_dot_product_attention(query, k, v, is_causal=windows[0][2], scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    out = query.new_zeros(batch, heads, queries, value.shape[-1])  # padding queries: zeros, never read
    for row, window in enumerate(windows):
        k, v = _row_kv(key, value, row, groups)
        if window is None:  # an unexpected mask: this row masked, as sdpa computes it
            mask = None if attention_mask is None else attention_mask[row:row + 1]
            out[row:row + 1] = F.scaled_dot_product_attention(query[row:row + 1], k, v, attn_mask=mask,
                                                               is_causal=mask is None and causal, scale=scaling)
            continue
        first, first_query, row_causal = window
        if cross_prompt:
            # Which queries are real (a left-padded prompt) is not known here, and SDPA's numbers for one query
            # depend on how many others share the call (measured: 1e-7 between 1 and 5 queries). One query per
            # call is exact. (An encoder's self-attention needs no such care: every row has all its frames,
            # alone or not.)
            for index in range(queries):
                out[row:row + 1, :, index:index + 1] = F.scaled_dot_product_attention(
                    query[row:row + 1, :, index:index + 1], k, v, scale=scaling)
            continue
        out[row:row + 1, :, first_query:] = F.scaled_dot_product_attention(
            query[row:row + 1, :, first_query:], k[:, :, first:], v[:, :, first:], is_causal=row_causal,
            scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def in_use(config: Any) -> bool:
    """Whether modules built from `config` attend row by row (what the written-out Whisper paths require)."""
    return getattr(config, "_attn_implementation", None) == NAME


def use_row_attention(config: Any) -> None:
    """Make the modules built from `config` (already built ones included: they read it per call) attend
    row by row."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(NAME, row_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    config._attn_implementation = NAME
