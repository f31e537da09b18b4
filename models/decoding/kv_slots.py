"""Keys and values of a running set of rows, in preallocated slots, behind transformers' Cache interface.

transformers' DynamicCache concatenates every layer's keys and values at every step (a copy of the whole
cache per step) and can only drop rows, not add them. Here each layer owns tensors
`[slots, kv_heads, columns, head_dim]`; running row i lives in slot i (running rows are kept in slots
0..n-1). Columns are shared time positions: row i's entries fill columns first[i]..end-1 (what lies before
first[i] is masked). One decode step writes column `end` of every running row. A group of new rows is
prefilled into the slots after the running ones, right-aligned so that its prompts end at `end`, and joins
the running set; a finished row is replaced by the last running row (one row copied, nothing else moves).
The attention mask [n, 1, q, kv] is built here from `first` and handed to the model as a 4-D mask, so the
model's own mask logic (which assumes one shared history) is not involved.

Whisper's cross-attention keys and values (one per row, all of the encoder's length) live in a second set of
slots that follows the same row moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

_GROW = 2  # slot and column storage grows by this factor when it runs out
_SLACK_COLUMNS = 64  # beyond the longest row: the history moves left at most once every this many steps


@dataclass
class Window:
    """Which slots and columns the next forward pass writes and reads (set by the session before it)."""

    rows: slice = field(default_factory=lambda: slice(0, 0))  # slots of the rows in this forward pass
    write: slice = field(default_factory=lambda: slice(0, 0))  # columns written (the new tokens)
    read: slice = field(default_factory=lambda: slice(0, 0))  # columns attended (history + new tokens)


class _SlotLayer(CacheLayerMixin):
    """One attention layer's keys and values for every slot; `update` writes and reads the window."""

    is_sliding = False
    is_compileable = False
    is_croppable = False

    def __init__(self, window: Window) -> None:
        # CacheLayerMixin.__init__ would assign `keys`/`values`, which are read-only views of the window here.
        self.is_initialized = False
        self.window = window
        self.key_store: torch.Tensor | None = None  # [slots, heads, columns, head_dim]
        self.value_store: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError("slot storage is allocated by the session before the first forward pass")

    def allocate(self, slots: int, heads: int, columns: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        """(Re)allocate, keeping what fits of the old contents at the same slot and column."""
        keys = torch.zeros((slots, heads, columns, head_dim), dtype=dtype, device=device)
        values = torch.zeros_like(keys)
        if self.key_store is not None:
            s, c = min(slots, self.key_store.shape[0]), min(columns, self.key_store.shape[2])
            keys[:s, :, :c] = self.key_store[:s, :, :c]
            values[:s, :, :c] = self.value_store[:s, :, :c]
        self.key_store, self.value_store = keys, values
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.window
        self.key_store[w.rows, :, w.write] = key_states  # [rows, heads, new, head_dim]
        self.value_store[w.rows, :, w.write] = value_states
        return self.key_store[w.rows, :, w.read], self.value_store[w.rows, :, w.read]

    @property
    def keys(self) -> torch.Tensor:  # what cross-attention reads once its cache is filled
        return self.key_store[self.window.rows, :, self.window.read]

    @property
    def values(self) -> torch.Tensor:
        return self.value_store[self.window.rows, :, self.window.read]

    def get_seq_length(self) -> int:
        return self.window.read.stop - self.window.read.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length(), 0

    def get_max_length(self) -> int:
        return -1 if self.key_store is None else self.key_store.shape[2]

    def move_slot(self, source: int, target: int, columns: slice) -> None:
        self.key_store[target, :, columns] = self.key_store[source, :, columns]
        self.value_store[target, :, columns] = self.value_store[source, :, columns]

    def shift_columns(self, rows: slice, source: slice, offset: int) -> None:
        """Move the columns `source` of `rows` by `offset` (copy first: the ranges may overlap)."""
        target = slice(source.start + offset, source.stop + offset)
        self.key_store[rows, :, target] = self.key_store[rows, :, source].clone()
        self.value_store[rows, :, target] = self.value_store[rows, :, source].clone()


class SlotCache(Cache):
    """A transformers Cache over slot layers; all layers share one Window."""

    def __init__(self, num_layers: int, window: Window) -> None:
        super().__init__(layers=[_SlotLayer(window) for _ in range(num_layers)])
        self.window = window


@dataclass(frozen=True)
class LayerShape:
    layers: int
    heads: int  # key/value heads
    head_dim: int


class KVSlots:
    """The running rows' self-attention (and optional cross-attention) caches and their column window."""

    def __init__(self, self_shape: LayerShape, dtype: torch.dtype, device: torch.device,
                 max_rows: int, cross_shape: LayerShape | None = None, cross_length: int = 0,
                 columns: int = 64, row_columns: int | None = None) -> None:
        self.max_rows = max_rows
        # The longest a row can be (prompt + budget): storage grows towards it plus some slack rather than
        # doubling past it; beyond, the history moves left over columns no running row uses any more.
        self.row_columns = row_columns
        self.window = Window()
        self.cross_window = Window()
        self.cache = SlotCache(self_shape.layers, self.window)
        self.cross_cache = SlotCache(cross_shape.layers, self.cross_window) if cross_shape else None
        self._shapes = (self_shape, cross_shape)
        self.cross_length = cross_length
        self.dtype, self.device = dtype, device
        self.slots, self.columns = 0, columns
        self.first: list[int] = []  # first valid column of each running row, in slot order
        self.end = 0  # next column a decode step writes

    # --- sizes ---------------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self.first)

    def bytes_per_row(self, columns: int) -> int:
        """KV memory one row needs with `columns` self-attention positions (keys + values, all layers)."""
        self_shape, cross_shape = self._shapes
        size = torch.finfo(self.dtype).bits // 8
        total = 2 * self_shape.layers * self_shape.heads * self_shape.head_dim * columns
        if cross_shape is not None:
            total += 2 * cross_shape.layers * cross_shape.heads * cross_shape.head_dim * self.cross_length
        return total * size

    def _ensure(self, slots: int, columns: int) -> None:
        """Storage for at least `slots` rows and `columns` positions (grown geometrically, slots capped)."""
        if slots > self.max_rows:
            raise RuntimeError(f"{slots} running rows requested; this session holds at most {self.max_rows}")
        if self.slots and slots <= self.slots and columns <= self.columns:
            return
        if slots > self.slots:
            self.slots = min(self.max_rows, max(slots, self.slots * _GROW))
        if columns > self.columns:
            grown = self.columns * _GROW
            if self.row_columns is not None:
                grown = min(grown, self.row_columns + _SLACK_COLUMNS)
            self.columns = max(columns, grown)
        self_shape, cross_shape = self._shapes
        for layer in self.cache.layers:
            layer.allocate(self.slots, self_shape.heads, self.columns, self_shape.head_dim, self.dtype, self.device)
        if self.cross_cache is not None:
            for layer in self.cross_cache.layers:
                layer.allocate(self.slots, cross_shape.heads, self.cross_length, cross_shape.head_dim, self.dtype,
                               self.device)

    # --- windows ---------------------------------------------------------------------------------------
    def point(self, rows: slice, read: slice, write: slice) -> None:
        """Aim the next forward pass at slots `rows`: it writes columns `write` and attends over `read`;
        cross-attention (when present) reads and writes the full encoder length of the same slots."""
        self.window.rows, self.window.read, self.window.write = rows, read, write
        full = slice(0, self.cross_length)
        self.cross_window.rows, self.cross_window.read, self.cross_window.write = rows, full, full

    # --- joining ---------------------------------------------------------------------------------------
    def open_join(self, lengths: list[int]) -> tuple[slice, slice]:
        """Make room for new rows whose prompts have `lengths` tokens (left-padded to the longest) and end at
        column `end`. Returns (their slots, their prompt columns). They are not running until `commit_join`,
        so a failed prefill needs no undo."""
        width = max(lengths)
        if not self.first:
            self.end = width
        elif self.end < width:  # the running rows' history is shorter than the new prompts: move it right
            self._shift_running(width - self.end)
        self._ensure(self.running + len(lengths), self.end + 1)
        return slice(self.running, self.running + len(lengths)), slice(self.end - width, self.end)

    def commit_join(self, lengths: list[int]) -> None:
        self.first.extend(self.end - length for length in lengths)

    @staticmethod
    def prefill_mask(lengths: list[int], device: torch.device) -> torch.Tensor:
        """[b, 1, L, L] bool for left-padded prompts: causal, padding hidden. A padding position sees itself,
        so no attention row is empty (an empty row gives NaN, and NaN times a zero weight is still NaN)."""
        width = max(lengths)
        positions = torch.arange(width, device=device)
        pad = torch.tensor([width - length for length in lengths], device=device)[:, None, None]  # [b, 1, 1]
        causal = positions[None, :, None] >= positions[None, None, :]  # [1, L, L] query >= key
        visible = causal & (positions[None, None, :] >= pad)
        return (visible | torch.eye(width, dtype=torch.bool, device=device))[:, None]

    # --- stepping --------------------------------------------------------------------------------------
    def point_step(self) -> torch.Tensor:
        """Aim at every running row and the next column (making room when storage is full); returns the
        mask [n, 1, 1, kv]: each row sees its own columns, up to and including the new one."""
        if self.end >= self.columns:
            self._make_room()
        start = min(self.first)
        self.point(slice(0, self.running), slice(start, self.end + 1), slice(self.end, self.end + 1))
        columns = torch.arange(start, self.end + 1, device=self.device)  # [kv]
        first = torch.tensor(self.first, device=self.device)[:, None]  # [n, 1]
        return (columns[None, :] >= first)[:, None, None, :]

    def advance(self) -> None:
        self.end += 1

    # --- leaving -------------------------------------------------------------------------------------
    def remove(self, index: int) -> int | None:
        """Drop running row `index`; the last running row moves into its slot. Returns the slot index the
        moved row came from (None when the removed row was last)."""
        last = self.running - 1
        moved = None
        if index != last:
            columns = slice(min(self.first), self.end)
            for layer in self.cache.layers:
                layer.move_slot(last, index, columns)
            if self.cross_cache is not None:
                for layer in self.cross_cache.layers:
                    layer.move_slot(last, index, slice(0, self.cross_length))
            self.first[index] = self.first[last]
            moved = last
        self.first.pop()
        if not self.first:
            self.end = 0
        return moved

    # --- column management ---------------------------------------------------------------------------
    def _make_room(self) -> None:
        """`end` reached the last column: move the history left over columns no running row uses, or grow."""
        start = min(self.first)
        if start > 0:
            self._shift_running(-start)
        if self.end >= self.columns:
            self._ensure(self.slots, self.end + 1)

    def _shift_running(self, offset: int) -> None:
        """Move every running row's history by `offset` columns (right for a wider join, left to compact)."""
        start = min(self.first)
        self._ensure(self.slots, self.end + max(offset, 0) + 1)
        rows, source = slice(0, self.running), slice(start, self.end)
        for layer in self.cache.layers:
            layer.shift_columns(rows, source, offset)
        self.first = [first + offset for first in self.first]
        self.end += offset


def cache_argument(module: torch.nn.Module) -> str:
    """The name a transformers forward takes its cache under: `cache` (>= 5.2x), `past_key_values` before."""
    import inspect

    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
