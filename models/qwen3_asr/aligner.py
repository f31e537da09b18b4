"""Qwen3-ForcedAligner-0.6B: word times for production segments (implements models.recognition.Aligner).

The released layouts load with the backbone loader's care (models.qwen3_asr.checkpoint: every tensor named
and shaped exactly, else CheckpointError; transformers' from_pretrained is never trusted with the weights):
- original (`Qwen/Qwen3-ForcedAligner-0.6B`): `thinker_config` with `classify_num` (5000 classes of
  `timestamp_segment_time` = 80 ms), weights `thinker.*`, the class head at `thinker.lm_head` [5000, 1024];
- "-hf" (transformers' converter): `Qwen3ASRForTokenClassification`, `num_labels`, head `score`.

Inference follows upstream qwen-asr (qwen_asr/inference/qwen3_forced_aligner.py) and transformers'
processor: the text is split into words (whitespace; CJK per character; punctuation dropped), the prompt is
`<|audio_start|><|audio_pad|><|audio_end|>w1<timestamp><timestamp>w2<timestamp><timestamp>...`, ONE
forward pass gives class logits at every position, the argmax at the two `<timestamp>` positions after a
word x 80 ms are its start and end, and `decode_forced_alignment` repairs non-monotonic times. A batch is
right-padded (features per item, zero-padded and masked, as the recognizer does), so a row's times do
not depend on its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.qwen3_asr.checkpoint import (
    CheckpointError,
    _copy_weights,
    _plan_copy,
    _read_json,
    convert_original_config,
    detect_layout,
    load_processor,
    read_tensor_shapes,
)
from models.qwen3_asr.recognizer import pad_short_clip
from models.recognition import SAMPLE_RATE, AlignmentItem, Word

ALIGNER_KEY_RULES: tuple[tuple[str, str], ...] = (  # transformers' converter, forced-aligner mapping
    ("thinker.model.", "model.language_model."),
    ("thinker.lm_head.", "score."),
    ("thinker.", "model."),
    ("model.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
    ("model.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
)
# ISO code -> the aligner's language name (its 11 languages; ja and ko need their word tokenizers).
ALIGNER_LANGUAGES = {"zh": "Chinese", "en": "English", "yue": "Cantonese", "fr": "French", "de": "German",
                     "it": "Italian", "ja": "Japanese", "ko": "Korean", "pt": "Portuguese", "ru": "Russian",
                     "es": "Spanish"}
AUDIO_PROMPT = "<|audio_start|><|audio_pad|><|audio_end|>"
TIMESTAMP_PAIR = "<timestamp><timestamp>"


def convert_aligner_key(key: str) -> str:
    for old, new in ALIGNER_KEY_RULES:
        if key.startswith(old):
            key = new + key[len(old):]
    return key


def aligner_config(directory: Path, layout: str) -> dict[str, Any]:
    """A config dict Qwen3ASRConfig accepts, with num_labels, timestamp_token_id and timestamp_segment_time."""
    original = _read_json(directory / "config.json")
    if layout == "original":
        classes = original.get("thinker_config", {}).get("classify_num")
        config = convert_original_config(original)
        config["num_labels"] = classes
    else:
        config = dict(original)
        classes = config.get("num_labels") or len(config.get("id2label") or {}) or None
    if not classes:
        raise CheckpointError(f"{directory} is not a forced aligner: its config has no "
                              f"{'thinker_config.classify_num' if layout == 'original' else 'num_labels'}")
    missing = [key for key in ("timestamp_token_id", "timestamp_segment_time") if key not in config]
    if missing:
        raise CheckpointError(f"{directory}/config.json lacks {missing}: not a Qwen3-ForcedAligner config")
    config.pop("id2label", None), config.pop("label2id", None)
    config["num_labels"] = int(classes)
    return config


def _build(config_dict: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    from transformers import Qwen3ASRConfig, Qwen3ASRForTokenClassification
    from transformers.initialization import no_init_weights
    from transformers.modeling_utils import local_torch_dtype

    try:
        config = Qwen3ASRConfig.from_dict(config_dict)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"config.json does not describe a Qwen3 forced aligner: {exc}") from exc
    with no_init_weights(), local_torch_dtype(dtype), device:
        return Qwen3ASRForTokenClassification(config)


def load_forced_aligner(directory: str | Path, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(Qwen3ASRForTokenClassification in eval mode, Qwen3ASRProcessor) from either layout; CheckpointError on
    any missing, unexpected or mis-shaped weight."""
    directory = Path(directory)
    layout = detect_layout(directory)
    model = _build(aligner_config(directory, layout), torch.device(device), dtype)
    rename = convert_aligner_key if layout == "original" else (lambda key: key)
    plan = _plan_copy(model, read_tensor_shapes(directory), rename,
                      f"{layout}-layout forced-aligner checkpoint {directory}")
    _copy_weights(model, plan)
    return model.eval(), load_processor(directory, layout)


@dataclass(frozen=True)
class _Split:
    aligned: list[str]  # what the aligner reads (kept characters only)
    shown: list[str]  # the same words as the text writes them (inner punctuation kept: "well-known")


class Qwen3ForcedAligner:
    """Batched forced alignment with Qwen3-ForcedAligner (models.recognition.Aligner)."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.timestamp_id = int(model.config.timestamp_token_id)
        self.segment_ms = float(model.config.timestamp_segment_time)
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._languages = frozenset(code for code in ALIGNER_LANGUAGES if code not in _missing_word_tokenizers())

    @classmethod
    def from_dir(cls, directory: str | Path, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Qwen3ForcedAligner:
        return cls(*load_forced_aligner(directory, device, dtype))

    def languages(self, robust: bool = False) -> frozenset[str] | None:
        return self._languages

    def split(self, text: str, language: str | None) -> _Split:
        """Words to align: the processor's rules (its tokenizers for ja/ko); elsewhere whitespace and CJK
        characters, keeping each word's written form for the answer."""
        if language in ("ja", "ko"):
            words = self.processor.split_words_for_alignment(text, ALIGNER_LANGUAGES[language])
            return _Split(words, list(words))
        from transformers.models.qwen3_asr.processing_qwen3_asr import _is_cjk_char, _is_kept_char

        aligned, shown, buffer, span = [], [], [], None
        for index, char in enumerate(text + " "):
            cjk, space = _is_cjk_char(char), char.isspace()
            if (cjk or space) and buffer:
                aligned.append("".join(buffer))
                shown.append(text[span[0]: span[1] + 1])
                buffer, span = [], None
            if cjk:
                aligned.append(char)
                shown.append(char)
            elif not space and _is_kept_char(char):
                buffer.append(char)
                span = (span[0] if span else index, index)
        return _Split(aligned, shown)

    def align(self, items: Sequence[AlignmentItem]) -> list[tuple[Word, ...]]:
        if not items:
            return []
        splits = [self.split(item.text, item.language) for item in items]
        rows = [index for index, split in enumerate(splits) if split.aligned]
        results: list[tuple[Word, ...]] = [() for _ in items]
        if not rows:
            return results
        encoded = [self._encode(items[i], splits[i].aligned) for i in rows]
        batch = self._collate(encoded)
        with torch.inference_mode():
            logits = self.model(**batch).logits  # [B, L, classes]
        times = self.processor.decode_forced_alignment(logits.float(), batch["input_ids"],
                                                       [splits[i].aligned for i in rows], self.timestamp_id,
                                                       self.segment_ms)
        for row, index in enumerate(rows):
            duration = len(items[index].audio) / SAMPLE_RATE
            results[index] = tuple(
                Word(shown, min(timed["start_time"], duration), min(max(timed["end_time"], timed["start_time"]),
                                                                   duration))
                for shown, timed in zip(splits[index].shown, times[row]))
        return results

    def _encode(self, item: AlignmentItem, words: list[str]) -> dict[str, torch.Tensor]:
        prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(words) + TIMESTAMP_PAIR
        encoded = self.processor(text=[prompt], audio=[pad_short_clip(item.audio)], return_tensors="pt")
        return {key: encoded[key] for key in ("input_ids", "input_features", "input_features_mask")}

    def _collate(self, encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad the token rows (positions stay 0..L-1 as alone; causal attention never reads the pads)
        and the features with zeros (masked)."""
        size, length = len(encoded), max(e["input_ids"].shape[1] for e in encoded)
        frames = max(e["input_features"].shape[2] for e in encoded)
        input_ids = torch.full((size, length), self.pad_id, dtype=torch.long)  # [B, L]
        attention = torch.zeros((size, length), dtype=torch.long)  # [B, L]
        features = torch.zeros((size, encoded[0]["input_features"].shape[1], frames))  # [B, 128, T]
        features_mask = torch.zeros((size, frames), dtype=torch.long)  # [B, T]
        for row, item in enumerate(encoded):
            tokens, count = item["input_ids"].shape[1], item["input_features"].shape[2]
            input_ids[row, :tokens] = item["input_ids"][0]
            attention[row, :tokens] = 1
            features[row, :, :count] = item["input_features"][0]
            features_mask[row, :count] = item["input_features_mask"][0]
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention.to(self.device),
                "input_features": features.to(self.device, self.dtype),
                "input_features_mask": features_mask.to(self.device)}


def _missing_word_tokenizers() -> set[str]:
    """ja / ko need nagisa / soynlp (optional packages) to split words; without them those languages are
    not aligned."""
    from transformers.utils.import_utils import is_nagisa_available, is_soynlp_available

    return {code for code, present in (("ja", is_nagisa_available()), ("ko", is_soynlp_available()))
            if not present}
