"""Whisper rows that join and leave a running batch between decode steps (models.decoding.session).

Prefill of a group of new rows: the encoder on their 30 s windows; one decoder pass on <|startoftranscript|>
alone (language detection and P(<|nospeech|>), as transformers' and openai's Whisper do, and it fills the
rows' cross-attention slots); then the decoder over each row's prompt ([<|startofprev|> context] SOT
[language transcribe]), left-padded. Where every row of the group knows its language and has no context,
the prompt is known before the first pass, and one pass does both: P(<|nospeech|>) is read at the SOT
position of the prompt pass, which sees SOT alone there as the first pass would (causal attention), so the
numbers are the same and a decoder pass is saved (~14 ms per segment for Whisper base on a 2-core CPU).
A decode step runs the decoder on one token per running row, with cross-attention read from the slots.
Rules and segments: models.whisper.rules.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import torch
from transformers.cache_utils import EncoderDecoderCache

from models import row_attention
from models.decoding.kv_slots import KVSlots, LayerShape, cache_argument
from models.decoding.session import Row, SteppedSession
from models.recognition import Recognition, RecognitionItem
from models.whisper.rules import WhisperRules
from models.whisper.written_out import WrittenOutDecoder


class RowSource(Protocol):
    """What a session needs from its recognizer (models.whisper.recognizer.WhisperRecognizer): the model,
    features, prompts, the first step's language and P(no speech), and turning tokens into text. The session
    is given one; it never imports the recognizer's module."""

    model: Any  # WhisperForConditionalGeneration
    device: torch.device
    dtype: torch.dtype
    max_new_tokens: int
    sot: int
    multilingual: bool  # False: one language, known before the first pass

    @property
    def start_length(self) -> int: ...

    def start_tokens(self, language: str) -> list[int]: ...

    def prompt_prefix(self, context: str, limit: int) -> list[int]: ...

    def validate(self, items: Sequence[RecognitionItem]) -> None: ...

    def features(self, items: Sequence[RecognitionItem]) -> torch.Tensor: ...

    def encode(self, features: torch.Tensor) -> torch.Tensor: ...

    def first_step(self, items: Sequence[RecognitionItem], logits: torch.Tensor) -> tuple[list[str], list[float]]: ...

    def to_recognition(self, item: RecognitionItem, language: str, generated: list[int], *, no_speech: float,
                       avg_logprob: float, encoded: torch.Tensor | None = None) -> Recognition: ...

    def decode_text(self, tokens: Sequence[int]) -> str: ...


class WhisperSession(SteppedSession):
    def __init__(self, recognizer: RowSource, max_rows: int) -> None:
        config = recognizer.model.config
        heads = config.decoder_attention_heads
        shape = LayerShape(config.decoder_layers, heads, config.d_model // heads)
        super().__init__(KVSlots(shape, recognizer.dtype, recognizer.device, max_rows=max_rows, cross_shape=shape,
                                 cross_length=config.max_source_positions,
                                 row_columns=config.max_target_positions))
        self.recognizer = recognizer
        self.decoder = recognizer.model.model.decoder
        self.rules_ = WhisperRules.from_generation_config(recognizer.model.generation_config)
        self.max_positions = config.max_target_positions
        self._cache_arg = cache_argument(self.decoder)
        self._cache = EncoderDecoderCache(self.kv.cache, self.kv.cross_cache)
        # Rows attend one by one (models.row_attention): passes run models.whisper.written_out, the same calls.
        self.written_out = row_attention.in_use(config)
        self._written = WrittenOutDecoder(self.decoder) if self.written_out else None

    def row_bytes(self) -> int:
        return self.kv.bytes_per_row(self.max_positions)

    # --- rows ----------------------------------------------------------------------------------------
    def check(self, items: Sequence[RecognitionItem]) -> None:
        self.recognizer.validate(items)

    def new_row(self, key: Hashable, item: RecognitionItem) -> Row:
        prefix = self.recognizer.prompt_prefix(item.context, limit=self.max_positions // 2 - 1)
        return Row(key=key, item=item, budget=self.recognizer.max_new_tokens, state={"prefix": prefix})

    def is_end(self, token: int) -> bool:
        return token == self.rules_.eot

    def rules(self, rows: list[Row], scores: torch.Tensor) -> torch.Tensor:
        return self.rules_.apply(scores, [row.tokens for row in rows])

    def render(self, row: Row) -> str:
        return self.recognizer.decode_text(row.text_tokens).lstrip()

    def result(self, row: Row) -> Recognition:
        return self.recognizer.to_recognition(row.item, row.state["language"], row.text_tokens,
                                              no_speech=row.state["no_speech"], avg_logprob=row.avg_logprob,
                                              encoded=row.state.get("encoded"))

    # --- forward passes ------------------------------------------------------------------------------
    def _decoder(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 encoder_states: torch.Tensor, fill_cross: bool) -> torch.Tensor:
        """Hidden states after the final layer norm [n, T, d]; `fill_cross`: compute and store
        cross-attention."""
        if self.written_out and tokens.shape[0] == 1:  # the packed CPU path, which prefills one row at a time
            if fill_cross:
                self._written.fill_cross(self.kv, encoder_states)
            return self._written.prompt(self.kv, tokens, positions)[None]
        self._cache.is_updated = dict.fromkeys(range(len(self.decoder.layers)), not fill_cross)
        return self.decoder(input_ids=tokens, attention_mask=mask, encoder_hidden_states=encoder_states,
                            position_ids=positions, use_cache=True, **{self._cache_arg: self._cache}).last_hidden_state

    def _known_languages(self, rows: list[Row]) -> list[str] | None:
        """The rows' languages when every row's prompt is known before the first pass (language given or
        one-language model, and no context before SOT); else None."""
        if any(row.state["prefix"] for row in rows):
            return None
        if not self.recognizer.multilingual:
            return ["en"] * len(rows)
        languages = [row.item.language for row in rows]
        return None if None in languages else languages

    prepares_ahead = True

    def prepare_items(self, items: Sequence[RecognitionItem]) -> list[torch.Tensor]:
        """Each item's encoder states [1, 1500, d]: the encoder reads nothing of the session, so it can run
        ahead on another thread while the running rows step (app/engine/prefill_ahead.py)."""
        recognizer = self.recognizer
        return [recognizer.encode(recognizer.features([item])) for item in items]

    def prefill(self, rows: list[Row], prepared: Sequence[Any] | None = None) -> torch.Tensor:
        """Scores after each row's prompt [n, V]. On a CPU one row at a time: a group's encoder states and
        cross-attention keys (n x 1500 x d each) leave the caches, and a group of 16 then costs 1.15-1.5x per
        row (measured, AVX2); a row's numbers are the same either way (models/row_attention.py).
        `prepared`: the rows' encoder states from `prepare_items`, when it ran ahead."""
        if self.kv.device.type == "cpu" and len(rows) > 1:
            return torch.cat([self._prefill([row], None if prepared is None else [prepared[index]])
                              for index, row in enumerate(rows)])
        return self._prefill(rows, prepared)

    def _prefill(self, rows: list[Row], prepared: Sequence[torch.Tensor] | None) -> torch.Tensor:
        recognizer, device = self.recognizer, self.kv.device
        if prepared is None:
            encoded = recognizer.encode(recognizer.features([row.item for row in rows]))  # [B, 1500, d]
        else:
            encoded = torch.cat(list(prepared))
        lengths = [len(row.state["prefix"]) + recognizer.start_length for row in rows]
        slots, columns = self.kv.open_join(lengths)
        items, known = [row.item for row in rows], self._known_languages(rows)
        if known is None:
            languages, no_speech = self._first_pass(items, slots, columns, encoded)
        else:
            languages = known
        prompts = [row.state["prefix"] + recognizer.start_tokens(language) for row, language in zip(rows, languages)]
        # Pass 2 (the only one when the prompts were known): every row's prompt, left-padded.
        self.kv.point(slots, columns, columns)
        tokens, positions = self._prompt_tensors(prompts)
        hidden = self._decoder(tokens, positions, KVSlots.prefill_mask(lengths, device), encoded, known is not None)
        if known is None:
            scores = recognizer.model.proj_out(hidden[:, -1])
        else:  # SOT opens each prompt (no context): its position is the first real one; one product for both
            starts = torch.tensor([tokens.shape[1] - len(prompt) for prompt in prompts], device=device)
            sot_hidden = hidden[torch.arange(len(rows), device=device), starts]  # [n, d]
            sot_scores, scores = recognizer.model.proj_out(torch.cat([sot_hidden, hidden[:, -1]])).split(len(rows))
            _, no_speech = recognizer.first_step(items, sot_scores)  # languages: known
        self.kv.commit_join(lengths)
        for index, (row, prompt, language, p_none) in enumerate(zip(rows, prompts, languages, no_speech)):
            row.position = len(prompt)
            row.budget = min(row.budget, self.max_positions - len(prompt))
            row.state.update(language=language, no_speech=p_none)
            if row.item.words:  # the aligner's teacher-forced pass reuses it ([1500, d], ~1 MB): no 2nd encoder
                row.state["encoded"] = encoded[index].clone()
        return scores

    def _first_pass(self, items: list[RecognitionItem], slots: slice, columns: slice,
                    encoded: torch.Tensor) -> tuple[list[str], list[float]]:
        """<|startoftranscript|> alone, in the block's last column (the prompt pass overwrites it); fills the
        cross-attention slots. Each row's language (given or detected) and P(no speech)."""
        device, count = self.kv.device, len(items)
        self.kv.point(slots, slice(columns.stop - 1, columns.stop), slice(columns.stop - 1, columns.stop))
        hidden = self._decoder(torch.full((count, 1), self.recognizer.sot, device=device),
                               torch.zeros((count, 1), dtype=torch.long, device=device),
                               torch.ones((count, 1, 1, 1), dtype=torch.bool, device=device), encoded, True)
        return self.recognizer.first_step(items, self.recognizer.model.proj_out(hidden[:, -1]))

    def _prompt_tensors(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and positions [n, width] of left-padded prompts."""
        device, width = self.kv.device, max(len(prompt) for prompt in prompts)
        tokens = torch.full((len(prompts), width), self.rules_.eot, dtype=torch.long, device=device)
        positions = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        for index, prompt in enumerate(prompts):
            tokens[index, width - len(prompt):] = torch.tensor(prompt, device=device)
            positions[index, width - len(prompt):] = torch.arange(len(prompt), device=device)
        return tokens, positions

    def decode(self, rows: list[Row], tokens: torch.Tensor, positions: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        if self.written_out:  # the packed CPU path: the step without transformers' plumbing
            return self.recognizer.model.proj_out(self._written.step(self.kv, tokens, positions))
        # Cross-attention reads the slots; the decoder only needs to be told that there is an encoder.
        placeholder = torch.zeros((len(rows), 1, self.recognizer.model.config.d_model), dtype=self.kv.dtype,
                                  device=self.kv.device)
        return self.recognizer.model.proj_out(self._decoder(tokens, positions, mask, placeholder, False)[:, -1])
