"""Word times on the demo's Whisper models (implements models.recognition.Aligner).

One teacher-forced decoder pass per batch of finished segments: each row is
<|startoftranscript|> [language transcribe] <|notimestamps|> + its text tokens + <|endoftext|>, run over
the encoder output the recognizer kept for it (no second encoder pass), right-padded (the decoder is
causal, so padding after a row cannot change it). The cross-attention of the model's alignment heads (from
its generation config: the converted models carry openai/whisper's published masks) is captured by hooks,
cropped to the segment's frames and softmaxed there, then models.whisper.timing turns it into words.
Each word's probability is the mean probability the model gave its tokens.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any, Self

import torch

from models.decoding.routed import per_route
from models.recognition import SAMPLE_RATE, AlignmentItem, Word
from models.whisper.timing import (
    FRAMES_PER_SECOND,
    alignment_matrix,
    merge_punctuation,
    shorten_long_words,
    split_words,
    word_times,
)

_STRIP = string.punctuation + "“”‘’¿¡«»、。，！？：；（）"


def alignment_heads(model: Any) -> list[tuple[int, int]]:
    """(decoder layer, head) pairs whose cross-attention follows the audio; raises when the model has none."""
    heads = getattr(model.generation_config, "alignment_heads", None)
    if not heads:
        raise ValueError("this Whisper model's generation config has no alignment_heads: word times need them")
    return [(int(layer), int(head)) for layer, head in heads]


def display_word(word: str) -> str:
    """A word as the answer lists it: no surrounding spaces or punctuation (inner marks stay: "don't")."""
    return word.strip().strip(_STRIP)


class CrossAttentionCapture:
    """Forward hooks on the decoder's cross-attention modules that keep the softmaxed weights of the alignment
    heads: q = q_proj(h) * scale, k = k_proj(encoder states), softmax(q kᵀ) over the first `frames` frames."""

    def __init__(self, decoder: Any, heads: list[tuple[int, int]]) -> None:
        self.decoder = decoder
        self.heads = heads
        self.frames = 0
        self.captured: dict[int, torch.Tensor] = {}  # layer -> [B, H, T, frames]

    def __enter__(self) -> Self:
        self._handles = [self.decoder.layers[layer].encoder_attn.register_forward_pre_hook(
            self._hook(layer), with_kwargs=True) for layer in sorted({layer for layer, _ in self.heads})]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, layer: int):
        def capture(module: Any, args: tuple, kwargs: dict) -> None:
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            states = kwargs["key_value_states"][:, : self.frames]
            batch, length, _ = hidden.shape
            query = (module.q_proj(hidden) * module.scaling).view(batch, length, module.num_heads, -1)
            key = module.k_proj(states).view(batch, states.shape[1], module.num_heads, -1)
            scores = torch.einsum("bthd,bshd->bhts", query.float(), key.float())  # [B, H, T, frames]
            self.captured[layer] = scores.softmax(dim=-1)
        return capture

    def weights(self, row: int, frames: int) -> torch.Tensor:
        """[alignment heads, T, frames] of one row, renormalised over its own frames."""
        stacked = torch.stack([self.captured[layer][row, head, :, :frames] for layer, head in self.heads])
        return stacked / stacked.sum(dim=-1, keepdim=True)


class WhisperAligner:
    """Times the words of finished segments on the Whisper model that recognized them."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer  # models.whisper.recognizer.WhisperRecognizer
        self.heads = alignment_heads(recognizer.model)
        generation = recognizer.model.generation_config
        self.eot = int(generation.eos_token_id)
        self.no_timestamps = int(generation.no_timestamps_token_id)

    def languages(self, robust: bool = False) -> frozenset[str] | None:
        return self.recognizer.languages()

    def align(self, items: Sequence[AlignmentItem]) -> list[tuple[Word, ...]]:
        if not items:
            return []
        prefixes = [self.recognizer.start_tokens(item.language or "en") + [self.no_timestamps] for item in items]
        texts = [list(item.tokens) or self._tokenize(item.text) for item in items]
        rows = [prefix + text + [self.eot] for prefix, text in zip(prefixes, texts)]
        with torch.inference_mode():
            encoded = self._encoded(items)  # [B, 1500, d]
            frames = [min(encoded.shape[1], math.ceil(len(item.audio) / SAMPLE_RATE * FRAMES_PER_SECOND))
                      for item in items]
            capture = CrossAttentionCapture(self.recognizer.model.model.decoder, self.heads)
            capture.frames = max(frames)
            with capture:
                logits = self._decode(rows, encoded)  # [B, T, V]
            return [self._words(item, prefix, text, logits[index], capture.weights(index, frames[index]))
                    for index, (item, prefix, text) in enumerate(zip(items, prefixes, texts))]

    def _tokenize(self, text: str) -> list[int]:
        return list(self.recognizer.processor.tokenizer.encode(" " + text.strip(), add_special_tokens=False))

    def _encoded(self, items: Sequence[AlignmentItem]) -> torch.Tensor:
        """Each row's encoder output: kept by the recognizer, else computed (rows without kept state)."""
        recognizer = self.recognizer
        missing = [index for index, item in enumerate(items) if item.state is None]
        computed = {}
        if missing:
            from models.recognition import RecognitionItem

            features = recognizer.features([RecognitionItem(audio=items[i].audio) for i in missing])
            states = recognizer.encode(features)
            computed = dict(zip(missing, states))
        return torch.stack([computed[i] if i in computed else items[i].state.to(recognizer.device, recognizer.dtype)
                            for i in range(len(items))])

    def _decode(self, rows: list[list[int]], encoded: torch.Tensor) -> torch.Tensor:
        width = max(len(row) for row in rows)
        tokens = torch.full((len(rows), width), self.eot, dtype=torch.long, device=encoded.device)
        for index, row in enumerate(rows):
            tokens[index, : len(row)] = torch.tensor(row, device=encoded.device)
        hidden = self.recognizer.model.model.decoder(input_ids=tokens, encoder_hidden_states=encoded,
                                                     use_cache=False).last_hidden_state
        return self.recognizer.model.proj_out(hidden).float()

    def _words(self, item: AlignmentItem, prefix: list[int], text: list[int], logits: torch.Tensor,
               weights: torch.Tensor) -> tuple[Word, ...]:
        if not text:
            return ()
        start = len(prefix) - 1  # the <|notimestamps|> position predicts the first text token
        probs = logits[start: start + len(text), : self.eot].softmax(dim=-1)
        token_probs = probs[torch.arange(len(text)), torch.tensor(text)].tolist()
        # Normalised over the row's whole sequence (as openai), then its text tokens + the end token's row.
        matrix = alignment_matrix(weights[:, : len(prefix) + len(text) + 1])[start: start + len(text) + 1]
        decode = self.recognizer.processor.tokenizer.decode
        words, word_tokens = split_words(text + [self.eot], decode, item.language, self.eot)
        timed = merge_punctuation(shorten_long_words(word_times(matrix, words, word_tokens, token_probs)))
        duration = len(item.audio) / SAMPLE_RATE
        out = []
        for word in timed:
            shown = display_word(word.word)
            if shown:
                end = min(word.end, duration)
                out.append(Word(shown, min(word.start, end), end, round(word.probability, 4)))
        return tuple(out)


class RoutedWhisperAligner:
    """The demo's Aligner: base-route segments align on tiny.en, robust-route segments on base."""

    def __init__(self, base: WhisperAligner, robust: WhisperAligner) -> None:
        self.base = base
        self.robust = robust

    def languages(self, robust: bool) -> frozenset[str] | None:
        return (self.robust if robust else self.base).languages()

    def align(self, items: Sequence[AlignmentItem]) -> list[tuple[Word, ...]]:
        return per_route(items, self.base.align, self.robust.align)
