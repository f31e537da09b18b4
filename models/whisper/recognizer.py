"""Batched Whisper recognition (transformers) behind the models.recognition boundary, and the demo's router.

Decoding runs in a session (models.whisper.session): rows join a running batch between decode steps and
leave when they end; recognize() is one such batch from start to end. Each row: the encoder on its 30 s
window, <|startoftranscript|> alone for the language (detected when not given) and P(<|nospeech|>), then
greedy decoding with timestamps under Whisper's rules (models.whisper.rules), each row with its own
language and prompt (`context`).

Every result reports P(<|nospeech|>) at the first step (`no_speech_prob`) and the average log-probability of
its decoded tokens and end token (`avg_logprob`), as openai/whisper defines it: under the scores greedy
decoding picked from, after the timestamp rules and token suppression. The recognizer never blanks text
itself: the service's guards (app/engine/guards.py) decide with these, the same way for every recognizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import row_attention
from models.decoding.routed import RoutedSession, per_route
from models.decoding.session import decode_all
from models.linear_plans import pack_whisper
from models.recognition import SAMPLE_RATE, Recognition, RecognitionItem, TimedText
from models.whisper.encode import encode_window
from models.whisper.features import LogMel, supports
from models.whisper.rules import split_segments
from models.whisper.session import WhisperSession

MAX_ITEM_SECONDS = 30.0  # Whisper's window; the service cuts longer audio before it gets here


def _lang_code(token: str) -> str:
    return token.removeprefix("<|").removesuffix("|>")  # "<|en|>" -> "en"


class WhisperRecognizer:
    """Greedy, batched, timestamped decoding with a transformers WhisperForConditionalGeneration."""

    def __init__(self, model: Any, processor: Any, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, max_new_tokens: int = 224, packed: str | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        # packed: int8/fp16 weights for the Linear layers models.linear_plans.WHISPER names (CPU, float32)
        self.packing = pack_whisper(self.model, packed) if packed else "none"
        self.processor = processor
        # the extractor's log-mel computed over the audio only (the same numbers, ~2 instead of ~7 ms a clip)
        self._log_mel = LogMel(processor.feature_extractor) if supports(processor.feature_extractor) else None
        self.max_new_tokens = max_new_tokens
        generation = model.generation_config
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        self._lang_to_id: dict[str, int] = {
            _lang_code(token): token_id for token, token_id in (getattr(generation, "lang_to_id", None) or {}).items()
        } if self.multilingual else {}
        self._id_to_lang = {token_id: code for code, token_id in self._lang_to_id.items()}
        self.sot = int(generation.decoder_start_token_id)
        self._eot = int(generation.eos_token_id)
        self._timestamp_begin = int(generation.no_timestamps_token_id) + 1
        self._no_speech = int(generation.no_timestamps_token_id) - 1  # <|nospeech|> precedes <|notimestamps|>
        self._transcribe = int(generation.task_to_id["transcribe"]) if self.multilingual else None

    @classmethod
    def from_pretrained(cls, path: Path, **kwargs: Any) -> WhisperRecognizer:
        """Load a converted directory (see models.whisper.convert) offline."""
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True)
        return cls(model, WhisperProcessor.from_pretrained(path, local_files_only=True), **kwargs)

    def languages(self) -> frozenset[str]:
        return frozenset(self._lang_to_id) if self.multilingual else frozenset({"en"})

    @property
    def start_length(self) -> int:
        """Tokens of the prompt from <|startoftranscript|> on: SOT, or SOT language transcribe."""
        return 3 if self.multilingual else 1

    def start_tokens(self, language: str) -> list[int]:
        if not self.multilingual:
            return [self.sot]
        return [self.sot, self._lang_to_id[language], self._transcribe]

    def prompt_prefix(self, context: str, limit: int) -> list[int]:
        """<|startofprev|> and the context's tokens (the last `limit` - 1 of them, as openai keeps), or []."""
        context = context.strip()
        if not context:
            return []
        ids = self.processor.get_prompt_ids(context, return_tensors="np").tolist()  # [startofprev, text...]
        return ids[:1] + ids[1:][-(limit - 1):]

    def open_session(self, max_rows: int) -> WhisperSession:
        """A running batch of at most `max_rows` rows (models.recognition.DecodeSession)."""
        return WhisperSession(self, max_rows)

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Transcribe a batch; same length and order as `items`."""
        if not items:
            return []
        return decode_all(self.open_session(len(items)), items)

    def validate(self, items: Sequence[RecognitionItem]) -> None:
        supported = self.languages()
        for index, item in enumerate(items):
            if item.language is not None and item.language not in supported:
                kind = "multilingual" if self.multilingual else "English-only"
                raise ValueError(f"item {index}: language {item.language!r} is not supported by this {kind} "
                                 "Whisper model")
            if item.duration > MAX_ITEM_SECONDS + 1e-6:
                raise ValueError(f"item {index} is {item.duration:.2f} s; Whisper items must be <= 30 s")

    def features(self, items: Sequence[RecognitionItem]) -> torch.Tensor:
        """[B, n_mels, 3000]: the feature extractor pads/truncates every waveform to 30 s, as Whisper was
        trained."""
        waveforms = [np.asarray(item.audio, dtype=np.float32) for item in items]
        if self._log_mel is not None:
            features = torch.stack([self._log_mel(waveform) for waveform in waveforms])
        else:
            features = self.processor.feature_extractor(waveforms, sampling_rate=SAMPLE_RATE,
                                                        return_tensors="pt").input_features
        return features.to(device=self.device, dtype=self.dtype)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 3000] -> encoder states [B, 1500, d]. On a CPU one window at a time: a batch's
        activations (B x 1500 x d) leave the caches, and its element-wise work and products then cost 1.4-1.5x
        per window at B=16 (Whisper base / tiny.en, AVX2, measured); a window's states are the same numbers
        either way. On an accelerator the batch runs as one call."""
        encoder = self.model.model.encoder
        if self.device.type != "cpu":
            return encoder(features).last_hidden_state
        # The packed CPU path attends row by row: there the written-out window (models.whisper.encode) gives
        # the same numbers without the per-head copies.
        windows = [features[index:index + 1] for index in range(len(features))]
        if row_attention.in_use(self.model.config):
            return torch.cat([encode_window(encoder, window) for window in windows])
        return torch.cat([encoder(window).last_hidden_state for window in windows])

    def first_step(self, items: Sequence[RecognitionItem], logits: torch.Tensor) -> tuple[list[str], list[float]]:
        """From the scores after <|startoftranscript|> [B, V]: language per row (given or detected) and
        P(<|nospeech|>)."""
        no_speech = logits.float().softmax(dim=-1)[:, self._no_speech].tolist()  # [B]
        if not self.multilingual:
            return ["en"] * len(items), no_speech
        language_ids = torch.tensor(list(self._id_to_lang), device=logits.device)
        detected = language_ids[logits[:, language_ids].argmax(dim=-1)].tolist()  # [B]
        languages = [item.language or self._id_to_lang[token_id] for item, token_id in zip(items, detected)]
        return languages, no_speech

    def to_recognition(self, item: RecognitionItem, language: str, generated: list[int], *, no_speech: float,
                       avg_logprob: float, encoded: torch.Tensor | None = None) -> Recognition:
        """A row's answer from its generated tokens (end token removed); `encoded` [1500, d] is the row's
        encoder output, kept for the aligner when the item asked for words."""
        segments = split_segments(generated, self._timestamp_begin)
        tokens = [token for _, _, piece in segments for token in piece]
        timed = []
        for start, end, piece in segments:
            text = self.decode_text(piece).strip()
            end = min(end, item.duration)  # a final open segment ends at the window edge
            if text:
                timed.append(TimedText(start=min(start, end), end=end, text=text))
        text_tokens = tuple(int(t) for t in tokens if int(t) < self._eot)  # no timestamps, no specials
        return Recognition(text=self.decode_text(tokens).strip(), language=language, num_tokens=len(tokens),
                           segments=tuple(timed), avg_logprob=avg_logprob, no_speech_prob=no_speech,
                           tokens=text_tokens, alignment_state=encoded)

    def decode_text(self, tokens: Sequence[int]) -> str:
        text_tokens = [int(t) for t in tokens if int(t) < self._timestamp_begin]
        return self.processor.tokenizer.decode(text_tokens, skip_special_tokens=True)


class RoutedWhisperRecognizer:
    """The demo's Recognizer: robust=False items -> `base` (tiny.en), robust=True -> `robust` (multilingual base)."""

    def __init__(self, base: WhisperRecognizer, robust: WhisperRecognizer) -> None:
        self.base = base
        self.robust = robust

    def languages(self, robust: bool) -> frozenset[str] | None:
        return (self.robust if robust else self.base).languages()

    def open_session(self, max_rows: int) -> RoutedSession:
        """Base rows decode on tiny.en, robust rows on base; each model keeps its own running rows."""
        return RoutedSession(self.base.open_session(max_rows), self.robust.open_session(max_rows))

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Each route's rows on its model; results in input order."""
        for path, recognizer in ((False, self.base), (True, self.robust)):  # reject before decoding anything
            recognizer.validate([item for item in items if item.robust == path])
        return per_route(items, self.base.recognize, self.robust.recognize)
