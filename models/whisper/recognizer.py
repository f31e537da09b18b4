"""Batched Whisper recognition (transformers) behind the models.recognition boundary, and the demo's router.

One `recognize` call = one encoder pass over the batch (features padded/truncated to Whisper's 30 s window),
one decoder step at <|startoftranscript|> for every row (language detection for rows without a language and
the no-speech probability), then greedy generation with timestamps. transformers' generate takes one
language per row, so a batch with mixed languages decodes in a single call; rows are only split by their
prompt text (`context`), because generate takes a single prompt per call.

Every result reports P(<|nospeech|>) at the first step (`no_speech_prob`) and the average log-probability
of its decoded tokens and end token (`avg_logprob`), as openai/whisper defines it: under the scores greedy
decoding picked from, after the timestamp rules and token suppression (models/confidence.py). The service's
guards (app/guards.py) decide with them. Optional built-in guard (openai/whisper's rule, off
with `no_speech_threshold=None`, as the service builds it): the text is "" when `no_speech_prob` is above
`no_speech_threshold` AND `avg_logprob` is below `logprob_threshold`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.confidence import ChosenLogprobs, processors
from models.recognition import SAMPLE_RATE, Recognition, RecognitionItem, TimedText

MAX_ITEM_SECONDS = 30.0  # Whisper's window; the service cuts longer audio before it gets here


def _lang_code(token: str) -> str:
    return token.removeprefix("<|").removesuffix("|>")  # "<|en|>" -> "en"


def _complete(results: list[Recognition | None]) -> list[Recognition]:
    missing = [index for index, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"no recognition produced for items {missing}")
    return [result for result in results if result is not None]


class WhisperRecognizer:
    """Greedy, batched, timestamped decoding with a transformers WhisperForConditionalGeneration."""

    def __init__(self, model: Any, processor: Any, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, max_new_tokens: int = 224,
                 no_speech_threshold: float | None = 0.6, logprob_threshold: float = -1.0) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        generation = model.generation_config
        self.multilingual = bool(getattr(generation, "is_multilingual", False))
        self._lang_to_id: dict[str, int] = {
            _lang_code(token): token_id for token, token_id in (getattr(generation, "lang_to_id", None) or {}).items()
        } if self.multilingual else {}
        self._id_to_lang = {token_id: code for code, token_id in self._lang_to_id.items()}
        self._sot = int(generation.decoder_start_token_id)
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

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Transcribe a batch; same length and order as `items`."""
        if not items:
            return []
        self.validate(items)
        with torch.inference_mode():
            features = self._features(items)  # [B, n_mels, 3000]
            encoded = self.model.model.encoder(features).last_hidden_state  # [B, 1500, D]
            languages, no_speech = self._first_step(items, encoded)
            results: list[Recognition | None] = [None] * len(items)
            for context, rows in self._rows_by_context(items).items():
                confidence = ChosenLogprobs()
                outputs = self._generate(encoded[rows], [languages[i] for i in rows], context, confidence)
                for group_row, (row, segments) in enumerate(zip(rows, outputs["segments"])):
                    scores = {"avg_logprob": confidence.average_to_end(group_row, self._eot),
                              "no_speech_prob": no_speech[row]}
                    results[row] = self._to_recognition(items[row], languages[row], segments, scores)
        return _complete(results)

    def validate(self, items: Sequence[RecognitionItem]) -> None:
        supported = self.languages()
        for index, item in enumerate(items):
            if item.language is not None and item.language not in supported:
                kind = "multilingual" if self.multilingual else "English-only"
                raise ValueError(f"item {index}: language {item.language!r} is not supported by this {kind} "
                                 "Whisper model")
            if item.duration > MAX_ITEM_SECONDS + 1e-6:
                raise ValueError(f"item {index} is {item.duration:.2f} s; Whisper items must be <= 30 s")

    def _features(self, items: Sequence[RecognitionItem]) -> torch.Tensor:
        # The feature extractor pads/truncates every waveform to 30 s, as Whisper was trained.
        waveforms = [np.asarray(item.audio, dtype=np.float32) for item in items]
        features = self.processor.feature_extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return features.input_features.to(device=self.device, dtype=self.dtype)

    def _first_step(self, items: Sequence[RecognitionItem], encoded: torch.Tensor) -> tuple[list[str], list[float]]:
        """Logits after <|startoftranscript|>: language per row (given or detected) and P(<|nospeech|>)."""
        start = torch.full((len(items), 1), self._sot, dtype=torch.long, device=self.device)
        logits = self.model(encoder_outputs=(encoded,), decoder_input_ids=start, use_cache=False).logits[:, -1]
        no_speech = logits.float().softmax(dim=-1)[:, self._no_speech].tolist()  # [B]
        if not self.multilingual:
            return ["en"] * len(items), no_speech
        language_ids = torch.tensor(list(self._id_to_lang), device=self.device)
        detected = language_ids[logits[:, language_ids].argmax(dim=-1)].tolist()  # [B]
        languages = [item.language or self._id_to_lang[token_id] for item, token_id in zip(items, detected)]
        return languages, no_speech

    @staticmethod
    def _rows_by_context(items: Sequence[RecognitionItem]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item.context.strip()].append(index)
        return groups

    def _generate(self, encoded: torch.Tensor, languages: list[str], context: str,
                  confidence: ChosenLogprobs) -> dict:
        from transformers.modeling_outputs import BaseModelOutput

        options: dict[str, Any] = {}
        if self.multilingual:
            options.update(language=languages, task="transcribe")
        if context:
            options["prompt_ids"] = self.processor.get_prompt_ids(context, return_tensors="pt").to(self.device)
        return self.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded), return_timestamps=True,
            return_segments=True, force_unique_generate_call=True,  # one pass per item: items are <= 30 s
            do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
            logits_processor=processors(confidence), **options,
        )

    def _to_recognition(self, item: RecognitionItem, language: str, segments: list[dict],
                        scores: dict[str, float | None]) -> Recognition:
        """`scores`: avg_logprob and no_speech_prob, reported for the service's guards (app/guards.py)."""
        tokens = [int(t) for segment in segments for t in segment["tokens"]]
        if self._is_hallucination(scores["avg_logprob"], scores["no_speech_prob"]):
            # No speech: nothing was said in any language, so only a caller-forced language is reported.
            return Recognition(text="", language=item.language, num_tokens=len(tokens), **scores)
        timed = []
        for segment in segments:
            text = self._decode(segment["tokens"]).strip()
            end = min(float(segment["end"]), item.duration)  # a final open segment ends at the window edge
            if text:
                timed.append(TimedText(start=min(float(segment["start"]), end), end=end, text=text))
        return Recognition(text=self._decode(tokens).strip(), language=language, num_tokens=len(tokens),
                           segments=tuple(timed), **scores)

    def _decode(self, tokens: Sequence[int] | torch.Tensor) -> str:
        text_tokens = [int(t) for t in tokens if int(t) < self._timestamp_begin]
        return self.processor.tokenizer.decode(text_tokens, skip_special_tokens=True)

    def _is_hallucination(self, avg_logprob: float | None, no_speech: float | None) -> bool:
        if self.no_speech_threshold is None or no_speech is None or no_speech <= self.no_speech_threshold:
            return False
        return avg_logprob is not None and avg_logprob < self.logprob_threshold


class RoutedWhisperRecognizer:
    """The demo's Recognizer: robust=False items -> `base` (tiny.en), robust=True -> `robust` (multilingual base)."""

    def __init__(self, base: WhisperRecognizer, robust: WhisperRecognizer) -> None:
        self.base = base
        self.robust = robust

    def languages(self, robust: bool) -> frozenset[str] | None:
        return (self.robust if robust else self.base).languages()

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        """Two sub-batches, one per model; results put back in input order."""
        for path, recognizer in ((False, self.base), (True, self.robust)):  # reject before decoding anything
            recognizer.validate([item for item in items if item.robust == path])
        results: list[Recognition | None] = [None] * len(items)
        for path, recognizer in ((False, self.base), (True, self.robust)):
            rows = [index for index, item in enumerate(items) if item.robust == path]
            if rows:
                for row, result in zip(rows, recognizer.recognize([items[i] for i in rows]), strict=True):
                    results[row] = result
        return _complete(results)
