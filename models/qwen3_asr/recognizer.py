"""Batched greedy Qwen3-ASR recognition with a per-row route (implements models.recognition.Recognizer).

Decoding runs in a session (models.qwen3_asr.session): rows join a running batch between decode steps and
leave the moment they end. recognize() is one such batch from start to end. A row's result must not depend
on what else is in the batch (upstream bug class QwenLM/Qwen3-ASR #207), so:
- features are computed per item, then right-padded with zeros and masked. The processor's own batching
  pads the *waveforms* before the log-mel, so a short item's padding frames hold log-mel silence instead of
  the zeros it gets alone, and the encoder's strided convolutions read those frames at the chunk edge;
- prompts are left-padded, with per-row positions and masks;
- every row keeps only its own token budget and stops at its own end token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.decoding.session import decode_all
from models.languages import QWEN3_ASR_LANGUAGES, to_name
from models.qwen3_asr.session import Qwen3ASRSession, RowGatedAdapter
from models.recognition import SAMPLE_RATE, Recognition, RecognitionItem

__all__ = ["Qwen3ASRRecognizer", "RowGatedAdapter", "pad_short_clip"]

MIN_SECONDS = 0.5  # shorter clips are zero-padded: the model answers nothing for them otherwise (upstream)
END_TOKENS = ("<|endoftext|>", "<|im_end|>")  # 151643 / 151645 in the real vocabulary
_BUDGET_MARGIN_TOKENS = 8  # the "language X<asr_text>" header and the end token


def pad_short_clip(audio: np.ndarray) -> np.ndarray:
    """float32 mono audio, zero-padded at the end to MIN_SECONDS."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    minimum = int(MIN_SECONDS * SAMPLE_RATE)
    return np.pad(audio, (0, minimum - len(audio))) if len(audio) < minimum else audio


class Qwen3ASRRecognizer:
    """Qwen3-ASR on a batch of items; robust rows go through the adapter (row-gated) or a merged model."""

    def __init__(self, model: Any, processor: Any, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, adapter: RowGatedAdapter | None = None,
                 merged_robust: bool = False, max_new_tokens: int = 256, tokens_per_second: float = 8.0,
                 min_new_tokens_budget: int = 16, suppress_end_tokens: bool = False) -> None:
        if adapter is not None and merged_robust:
            raise ValueError("an adapter cannot be both row-gated and merged into the weights")
        if max_new_tokens < 1 or min_new_tokens_budget < 1 or tokens_per_second <= 0:
            raise ValueError("max_new_tokens, min_new_tokens_budget and tokens_per_second must be positive")
        parameter = next(model.parameters())
        self.model = model
        self.processor = processor
        self.device = torch.device(device) if device is not None else parameter.device
        self.dtype = dtype if dtype is not None else parameter.dtype
        self.adapter = adapter
        self.merged_robust = merged_robust  # adapter merged into the weights: every row is robust
        self.max_new_tokens = max_new_tokens
        self.tokens_per_second = tokens_per_second
        self.min_new_tokens_budget = min_new_tokens_budget
        # Benchmarks with random weights only: end tokens are never chosen, so every row decodes exactly its
        # budget (a realistic length from its duration) instead of whatever the random weights say.
        self.suppress_end_tokens = suppress_end_tokens
        tokenizer = processor.tokenizer
        vocab = tokenizer.get_vocab()
        missing = [token for token in END_TOKENS if token not in vocab]
        if missing:
            raise ValueError(f"the tokenizer has no end tokens {missing}")
        self.eos_ids = [vocab[token] for token in END_TOKENS]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    @classmethod
    def from_dir(cls, directory: str | Path, device: str = "auto", dtype: str = "auto",
                 adapter_factory: Callable[[Any], RowGatedAdapter] | None = None,
                 **kwargs: Any) -> Qwen3ASRRecognizer:
        """Load a checkpoint directory (either layout); `adapter_factory(model)` attaches the adapter (after
        any packing of the Linear layers that the placement asks for)."""
        from models.device import resolve_placement
        from models.linear_plans import pack_qwen3_asr
        from models.qwen3_asr.checkpoint import load_qwen3_asr

        placement = resolve_placement(device, dtype)
        model, processor = load_qwen3_asr(directory, placement.device, placement.dtype)
        if placement.packed is not None:
            pack_qwen3_asr(model, placement.packed)
        adapter = adapter_factory(model) if adapter_factory is not None else None
        return cls(model, processor, device=placement.device, dtype=placement.dtype, adapter=adapter, **kwargs)

    def languages(self, robust: bool) -> frozenset[str] | None:
        """The model's 30 languages on an available path; nothing on a path this instance cannot run."""
        available = (self.adapter is not None or self.merged_robust) if robust else not self.merged_robust
        return QWEN3_ASR_LANGUAGES if available else frozenset()

    def token_budget(self, duration: float) -> int:
        """New tokens allowed for a clip: a speech rate times its duration plus the header; capped."""
        wanted = math.ceil(duration * self.tokens_per_second) + _BUDGET_MARGIN_TOKENS
        return min(self.max_new_tokens, max(self.min_new_tokens_budget, wanted))

    def prompt(self, item: RecognitionItem) -> str:
        """Chat prompt: context in the system turn; a forced language pre-fills the assistant header."""
        messages = [{"role": "system", "content": item.context},
                    {"role": "user", "content": [{"type": "audio", "audio": ""}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if item.language is not None:
            text += f"language {to_name(item.language)}<asr_text>"
        return text

    def open_session(self, max_rows: int) -> Qwen3ASRSession:
        """A running batch of at most `max_rows` rows (models.recognition.DecodeSession)."""
        return Qwen3ASRSession(self, max_rows)

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        if not items:
            return []
        return decode_all(self.open_session(len(items)), items)

    def check_items(self, items: Sequence[RecognitionItem]) -> None:
        """Refuse routes this instance cannot run and languages the model cannot be forced to."""
        robust = [item.robust for item in items]
        if any(robust) and self.adapter is None and not self.merged_robust:
            raise ValueError("robust path requested but no Mega-ASR adapter is attached to this recognizer")
        if self.merged_robust and not all(robust):
            raise ValueError("base path requested but the adapter is merged into the weights")
        unsupported = sorted({i.language for i in items if i.language and i.language not in QWEN3_ASR_LANGUAGES})
        if unsupported:
            raise ValueError(f"Qwen3-ASR cannot be forced to language(s) {unsupported}")

    def encode(self, item: RecognitionItem) -> dict[str, torch.Tensor]:
        """One item alone through the processor: input_ids [1, L], input_features [1, 128, T] (T a multiple
        of 100 mel frames), input_features_mask [1, T]."""
        encoded = self.processor(text=[self.prompt(item)], audio=[pad_short_clip(item.audio)],
                                 return_tensors="pt")
        return {key: encoded[key] for key in ("input_ids", "input_features", "input_features_mask")}

    def collate(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Left-pad the prompts, right-pad the features with zeros (masked), move to device and dtype."""
        size, max_tokens = len(encoded), max(e["input_ids"].shape[1] for e in encoded)
        max_frames = max(e["input_features"].shape[2] for e in encoded)
        num_mels = encoded[0]["input_features"].shape[1]
        input_ids = torch.full((size, max_tokens), self.pad_id, dtype=torch.long)  # [B, L]
        attention_mask = torch.zeros((size, max_tokens), dtype=torch.long)  # [B, L]
        features = torch.zeros((size, num_mels, max_frames), dtype=torch.float32)  # [B, 128, T]
        features_mask = torch.zeros((size, max_frames), dtype=torch.long)  # [B, T]
        for row, item in enumerate(encoded):
            tokens, frames = item["input_ids"].shape[1], item["input_features"].shape[2]
            input_ids[row, max_tokens - tokens:] = item["input_ids"][0]
            attention_mask[row, max_tokens - tokens:] = 1
            features[row, :, :frames] = item["input_features"][0]
            features_mask[row, :frames] = item["input_features_mask"][0]
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device),
                "input_features": features.to(self.device, self.dtype),
                "input_features_mask": features_mask.to(self.device)}
