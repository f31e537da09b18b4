"""The model-independent half of a decode session: rows, their budgets and text, joining, stepping,
finishing and cancelling. A model supplies the forward passes and the token rules (see the abstract
methods); the session never looks inside them.

Greedy decoding: each row takes the highest-scoring token after the model's rules, so a row's output
depends only on its own inputs (its neighbours differ only in padding, which the masks hide).
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from models.decoding.kv_slots import KVSlots
from models.recognition import Recognition, RecognitionItem, RowUpdate


@dataclass
class Row:
    """One running row: its item, what it generated and what it delivered."""

    key: Hashable
    item: RecognitionItem
    budget: int  # new tokens allowed, the end token included
    tokens: list[int] = field(default_factory=list)  # generated; the last one is fed at the next step
    position: int = 0  # position id of the next token fed
    logprob_sum: float = 0.0  # log-probability of every generated token under the rules it was chosen by
    emitted: str = ""  # text already delivered as deltas
    ended: bool = False  # generated an end token (as opposed to running out of budget)
    state: dict[str, Any] = field(default_factory=dict)  # the model's per-row facts (language, P(no speech), ...)

    @property
    def text_tokens(self) -> list[int]:
        """Generated tokens without the final end token."""
        return self.tokens[:-1] if self.ended else self.tokens

    @property
    def avg_logprob(self) -> float:
        """openai/whisper's avg_logprob: the sum over the tokens (end token included) / (text tokens + 1)."""
        return self.logprob_sum / (len(self.text_tokens) + 1)


class SteppedSession(abc.ABC):
    """Implements models.recognition.DecodeSession over a model's prefill / decode / rules."""

    def __init__(self, kv: KVSlots) -> None:
        self.kv = kv
        self.rows: list[Row] = []  # in slot order: rows[i] lives in slot i

    # --- what a model provides -----------------------------------------------------------------------
    @abc.abstractmethod
    def check(self, items: Sequence[RecognitionItem]) -> None:
        """Raise ValueError for items this model cannot decode (before anything runs)."""

    @abc.abstractmethod
    def new_row(self, key: Hashable, item: RecognitionItem) -> Row: ...

    @abc.abstractmethod
    def prefill(self, rows: list[Row], prepared: Sequence[Any] | None = None) -> torch.Tensor:
        """Encode and prefill the new rows into the slots after the running ones (self.kv.open_join /
        commit_join); set each row's `position`. Returns the scores for their first token [b, V].
        `prepared`: what `prepare_items` computed for each row ahead of time, in row order (None: nothing)."""

    # A model whose prefill starts with work that reads no session state (an audio encoder) sets this and
    # overrides `prepare_items`: that work can then run ahead, on another thread, while steps run.
    prepares_ahead = False

    def prepare_items(self, items: Sequence[RecognitionItem]) -> list[Any]:
        """Per item, the state-free part of its prefill (thread-safe; never touches the slots or rows)."""
        raise NotImplementedError(f"{type(self).__name__} prepares nothing ahead")

    @abc.abstractmethod
    def decode(self, rows: list[Row], tokens: torch.Tensor, positions: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """One forward pass of tokens [n, 1] at positions [n, 1] under mask [n, 1, 1, kv]; scores [n, V]."""

    @abc.abstractmethod
    def rules(self, rows: list[Row], scores: torch.Tensor) -> torch.Tensor:
        """The model's decoding rules applied to raw scores [n, V] (suppressed tokens -> -inf)."""

    @abc.abstractmethod
    def is_end(self, token: int) -> bool: ...

    @abc.abstractmethod
    def render(self, row: Row) -> str:
        """The row's transcript text so far, as it will read (for streaming deltas)."""

    @abc.abstractmethod
    def result(self, row: Row) -> Recognition: ...

    # --- DecodeSession -------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self.rows)

    # Every method that touches the slots runs in inference mode: the slot tensors are inference tensors.
    @torch.inference_mode()
    def prepare(self, items: Sequence[RecognitionItem]) -> list[Any]:
        """models.recognition.PreparesAhead: `prepare_items` after the same checks as join (inference mode is
        per thread, so it is entered here as well)."""
        self.check(items)
        prepared = self.prepare_items(items)
        if len(prepared) != len(items):
            raise RuntimeError(f"prepared {len(prepared)} items of {len(items)}")
        return prepared

    @torch.inference_mode()
    def join(self, entries: Sequence[tuple[Hashable, RecognitionItem]],
             prepared: Sequence[Any] | None = None) -> list[RowUpdate]:
        """`prepared`: `prepare`'s result for these entries, in order, when their prefill was started ahead."""
        if not entries:
            return []
        if prepared is not None and len(prepared) != len(entries):
            raise ValueError(f"{len(prepared)} prepared items for {len(entries)} entries")
        self.check([item for _, item in entries])
        new = [self.new_row(key, item) for key, item in entries]
        scores = self.prefill(new, prepared)
        self.rows.extend(new)
        return self._advance(new, scores)

    @torch.inference_mode()
    def step(self) -> list[RowUpdate]:
        if not self.rows:
            return []
        mask = self.kv.point_step()
        device = self.kv.device
        tokens = torch.tensor([[row.tokens[-1]] for row in self.rows], device=device)  # [n, 1]
        positions = torch.tensor([[row.position] for row in self.rows], device=device)  # [n, 1]
        scores = self.decode(self.rows, tokens, positions, mask)
        self.kv.advance()
        for row in self.rows:
            row.position += 1
        return self._advance(list(self.rows), scores)

    @torch.inference_mode()
    def cancel(self, keys: Iterable[Hashable]) -> None:
        wanted = set(keys)
        for row in [row for row in self.rows if row.key in wanted]:
            self._remove(row)

    @torch.inference_mode()
    def reset(self) -> None:
        for row in reversed(self.rows):  # last first: removing the last row moves no other row's slots
            self._remove(row)

    # --- internals -----------------------------------------------------------------------------------
    def _advance(self, rows: list[Row], scores: torch.Tensor) -> list[RowUpdate]:
        """Pick each row's next token under the rules, deliver its text, retire the rows that are done."""
        ruled = self.rules(rows, scores.float())
        chosen = ruled.argmax(dim=-1)  # [n]
        # log p(chosen) under the ruled scores (openai/whisper's avg_logprob is computed after its filters)
        logprobs = ruled.gather(1, chosen[:, None])[:, 0] - ruled.logsumexp(dim=-1)
        updates = []
        for row, token, logprob in zip(rows, chosen.tolist(), logprobs.tolist()):
            row.tokens.append(token)
            row.logprob_sum += logprob
            row.ended = self.is_end(token)
            done = row.ended or len(row.tokens) >= row.budget
            delta = self._delta(row, final=done)
            result = self.result(row) if done else None
            if done:
                self._remove(row)
            updates.append(RowUpdate(row.key, delta=delta, tokens=1, result=result))
        return updates

    def _delta(self, row: Row, final: bool) -> str:
        """New text since the last delivery. Text that is not an extension of what was delivered (a
        tokenizer merging across the boundary) waits for the final result instead; so does a trailing
        incomplete UTF-8 sequence, unless no token will follow."""
        text = self.render(row)
        if (text.endswith("\ufffd") and not final) or not text.startswith(row.emitted):
            return ""  # nothing safe to send yet
        delta, row.emitted = text[len(row.emitted):], text
        return delta

    def _remove(self, row: Row) -> None:
        index = self.rows.index(row)
        moved = self.kv.remove(index)
        if moved is not None:
            self.rows[index] = self.rows[moved]
        self.rows.pop()


def decode_all(session: SteppedSession, items: Sequence[RecognitionItem]) -> list[Recognition]:
    """Every item as one group: join them all, step until the last finishes (one whole batch)."""
    results: list[Recognition | None] = [None] * len(items)
    updates = session.join(list(enumerate(items)))
    while True:
        for update in updates:
            if update.result is not None:
                results[update.key] = update.result
        if not session.running:
            break
        updates = session.step()
    missing = [index for index, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"no recognition produced for items {missing}")
    return [result for result in results if result is not None]
