"""The slot cache: rows keep their own keys and values through joins, steps, departures and column moves."""

from __future__ import annotations

import pytest
import torch

from models.decoding.kv_slots import KVSlots, LayerShape

SHAPE = LayerShape(layers=2, heads=1, head_dim=2)


def write(kv: KVSlots, rows: int, new: int, value_of) -> None:
    """What a forward pass does: every layer writes `new` columns for `rows` rows (values from value_of)."""
    for index, layer in enumerate(kv.cache.layers):
        keys = torch.stack([torch.stack([value_of(r, c, index) for c in range(new)]) for r in range(rows)])  # [r, new, d]
        layer.update(keys[:, None], -keys[:, None])


def history(kv: KVSlots, row: int) -> list[float]:
    """Row `row`'s keys in its valid columns (layer 0, first feature), oldest first."""
    return kv.cache.layers[0].key_store[row, 0, kv.first[row]:kv.end, 0].tolist()


def join(kv: KVSlots, tags: list[float], lengths: list[int]) -> None:
    slots, columns = kv.open_join(lengths)
    kv.point(slots, columns, columns)
    width = max(lengths)
    write(kv, len(lengths), width, lambda r, c, layer: torch.full((2,), tags[r] + (c - (width - lengths[r])) / 100, dtype=torch.float64))
    kv.commit_join(lengths)


def step(kv: KVSlots, tags: list[float], offsets: list[int]) -> torch.Tensor:
    mask = kv.point_step()
    write(kv, kv.running, 1, lambda r, c, layer: torch.full((2,), tags[r] + offsets[r] / 100, dtype=torch.float64))
    kv.advance()
    return mask


@pytest.mark.parametrize("row_columns", [None, 12])  # storage doubling, or capped near the longest row
def test_rows_keep_their_history_through_joins_steps_departures_and_column_moves(row_columns):
    kv = KVSlots(SHAPE, torch.float64, torch.device("cpu"), max_rows=4, columns=4, row_columns=row_columns)
    join(kv, [1.0], [3])  # row A: 3 prompt positions
    for n in range(3):
        step(kv, [1.0], [3 + n])
    join(kv, [2.0, 3.0], [9, 2])  # wider than A's history: everything moves right
    assert history(kv, 0) == [1.0 + i / 100 for i in range(6)]
    assert history(kv, 1) == [2.0 + i / 100 for i in range(9)] and history(kv, 2) == [3.0, 3.01]
    mask = step(kv, [1.0, 2.0, 3.0], [6, 9, 2])
    assert mask.shape == (3, 1, 1, kv.end - min(kv.first)) and mask[2, 0, 0].sum() == 3  # row C sees 2 + new
    kv.remove(0)  # A leaves: C moves into its slot
    assert history(kv, 0) == [3.0 + i / 100 for i in range(3)] and history(kv, 1)[-1] == 2.09
    for n in range(40):  # columns run out repeatedly: history shifts left and storage grows
        step(kv, [3.0, 2.0], [3 + n, 10 + n])
    assert history(kv, 0) == [3.0 + i / 100 for i in range(43)]
    assert history(kv, 1) == [2.0 + i / 100 for i in range(50)]
    assert min(kv.first) >= 0 and kv.end <= kv.columns
    kv.remove(1)
    kv.remove(0)
    assert kv.running == 0 and kv.end == 0


def test_prefill_mask_is_causal_hides_padding_and_never_empty():
    mask = KVSlots.prefill_mask([3, 1], torch.device("cpu"))[:, 0]  # [2, 3, 3]
    assert mask[0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert mask[1].tolist() == [[True, False, False], [False, True, False], [False, False, True]]


def test_cache_memory_per_row():
    kv = KVSlots(SHAPE, torch.float32, torch.device("cpu"), max_rows=2,
                 cross_shape=LayerShape(2, 1, 2), cross_length=10)
    assert kv.bytes_per_row(100) == 2 * 2 * 1 * 2 * 100 * 4 + 2 * 2 * 1 * 2 * 10 * 4
