"""Qwen3-ASR rows that join and leave a running batch between decode steps (models.decoding.session).

Prefill of a group of new rows: each item's features and prompt alone through the processor (so a row never
sees another row's padding in its log-mel), the audio encoder on the group's non-empty chunks
(models.qwen3_asr.encoder), the audio embeddings placed on the prompt's audio tokens, and the LLM over the
left-padded prompts into the rows' cache slots. A decode step runs the LLM on one token per running row.
The Mega-ASR adapter's gate follows the rows of every forward pass, so base and robust rows share steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from models.decoding.kv_slots import KVSlots, LayerShape, cache_argument
from models.decoding.session import Row, SteppedSession
from models.qwen3_asr.encoder import encode_audio
from models.qwen3_asr.output import ASR_TEXT_TAG, parse_asr_output
from models.recognition import Recognition, RecognitionItem

AUDIO_TOKENS_PER_SECOND = 13  # the encoder's output rate (DESIGN.md §3)
_TEMPLATE_TOKENS = 32  # chat template + forced-language header around the audio tokens, rounded up


@runtime_checkable
class RowGatedAdapter(Protocol):
    """A LoRA adapter whose delta is gated per batch row (implemented by the Mega-ASR adapter)."""

    def rows(self, robust: Sequence[bool]) -> contextlib.AbstractContextManager:
        """Within the context, batch row i of every forward pass runs the robust path iff robust[i]; the
        base weights are never modified."""
        ...

    def audio_layout(self, features_mask: torch.Tensor) -> None:
        """Inside rows(): the audio encoder's input mask [B, T] of those rows (the encoder packs its input,
        so the gate must know which positions belong to which row)."""
        ...


class RowSource(Protocol):
    """What a session needs from its recognizer (models.qwen3_asr.recognizer.Qwen3ASRRecognizer): the model,
    per-item encoding and collation, token budgets and end tokens. The session is given one; it never
    imports the recognizer's module."""

    model: Any  # Qwen3ASRForConditionalGeneration
    processor: Any  # Qwen3ASRProcessor
    device: torch.device
    dtype: torch.dtype
    adapter: RowGatedAdapter | None
    max_new_tokens: int
    eos_ids: list[int]
    suppress_end_tokens: bool

    def check_items(self, items: Sequence[RecognitionItem]) -> None: ...

    def token_budget(self, duration: float) -> int: ...

    def encode(self, item: RecognitionItem) -> dict[str, torch.Tensor]: ...

    def collate(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]: ...


class Qwen3ASRSession(SteppedSession):
    def __init__(self, recognizer: RowSource, max_rows: int, max_segment_seconds: float = 30.0) -> None:
        model = recognizer.model
        text = model.config.text_config
        shape = LayerShape(text.num_hidden_layers, text.num_key_value_heads,
                           getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        self._max_columns = (math.ceil(max_segment_seconds * AUDIO_TOKENS_PER_SECOND) + _TEMPLATE_TOKENS
                             + recognizer.max_new_tokens)
        super().__init__(KVSlots(shape, recognizer.dtype, recognizer.device, max_rows=max_rows,
                                 row_columns=self._max_columns))
        self.recognizer = recognizer
        self.model = model
        self.language_model = model.model.language_model
        self._cache_arg = cache_argument(self.language_model)

    def row_bytes(self) -> int:
        return self.kv.bytes_per_row(self._max_columns)

    # --- rows ----------------------------------------------------------------------------------------
    def check(self, items: Sequence[RecognitionItem]) -> None:
        self.recognizer.check_items(items)

    def new_row(self, key: Hashable, item: RecognitionItem) -> Row:
        return Row(key=key, item=item, budget=self.recognizer.token_budget(item.duration))

    def is_end(self, token: int) -> bool:
        return token in self.recognizer.eos_ids

    def rules(self, rows: list[Row], scores: torch.Tensor) -> torch.Tensor:
        if self.recognizer.suppress_end_tokens:  # benchmarks with random weights: decode the whole budget
            scores[:, self.recognizer.eos_ids] = -math.inf
        return scores

    def render(self, row: Row) -> str:
        raw = self.recognizer.processor.tokenizer.decode(row.text_tokens, skip_special_tokens=True)
        if row.item.language is None:  # "language X<asr_text>" first; after "language None" nothing is text
            _, tag, text = raw.partition(ASR_TEXT_TAG)
            raw = text if tag and parse_asr_output(raw)[1] else ""
        return raw.lstrip()

    def result(self, row: Row) -> Recognition:
        """Runaway repetitions are left in: the service's guards cut them, the same for every recognizer."""
        tokens = row.text_tokens
        raw = self.recognizer.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        language, text = parse_asr_output(raw, forced_language=row.item.language)
        return Recognition(text=text, language=language, num_tokens=len(tokens), avg_logprob=row.avg_logprob)

    # --- forward passes ------------------------------------------------------------------------------
    def _gate(self, rows: list[Row]) -> contextlib.AbstractContextManager:
        adapter = self.recognizer.adapter
        return adapter.rows([row.item.robust for row in rows]) if adapter is not None else contextlib.nullcontext()

    def prefill(self, rows: list[Row], prepared: Sequence[Any] | None = None) -> torch.Tensor:
        # Nothing is prepared ahead here (prepares_ahead is False): the prompt's prefill is most of the work.
        encoded = [self.recognizer.encode(row.item) for row in rows]
        lengths = [e["input_ids"].shape[1] for e in encoded]
        slots, columns = self.kv.open_join(lengths)
        self.kv.point(slots, columns, columns)
        batch = self.recognizer.collate(encoded)
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # [b, L]; padding takes position 0
        mask = KVSlots.prefill_mask(lengths, self.kv.device)  # [b, 1, L, L]
        with self._gate(rows):
            if self.recognizer.adapter is not None:
                self.recognizer.adapter.audio_layout(batch["input_features_mask"])
            audio = encode_audio(self.model.model.audio_tower, self.model.model.multi_modal_projector,
                                 batch["input_features"], batch["input_features_mask"])  # [N, d]
            embeds = self.model.get_input_embeddings()(batch["input_ids"])  # [b, L, d]
            placeholders = (batch["input_ids"] == self.model.config.audio_token_id)[..., None].expand_as(embeds)
            embeds = embeds.masked_scatter(placeholders, audio.to(embeds.dtype))
            hidden = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                         use_cache=True, **{self._cache_arg: self.kv.cache}).last_hidden_state
            scores = self.model.lm_head(hidden[:, -1])  # [b, V]
        self.kv.commit_join(lengths)
        for row, length in zip(rows, lengths):
            row.position = length
        return scores

    def decode(self, rows: list[Row], tokens: torch.Tensor, positions: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        with self._gate(rows):
            hidden = self.language_model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                                         use_cache=True, **{self._cache_arg: self.kv.cache}).last_hidden_state
            return self.model.lm_head(hidden[:, -1])  # [n, V]
