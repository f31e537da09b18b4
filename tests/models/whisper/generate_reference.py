"""The previous Whisper decoding path, kept as the reference the session must equal: per context group one
transformers generate() (timestamps, per-row language) over the encoder output, SOT-only first step."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from models.recognition import RecognitionItem
from models.whisper.recognizer import WhisperRecognizer


def generate_tokens(recognizer: WhisperRecognizer, items: Sequence[RecognitionItem]) -> list[list[int]]:
    """Each item's tokens as transformers' segments give them (timestamps included, end token removed)."""
    with torch.inference_mode():
        encoded = recognizer.model.model.encoder(recognizer.features(items)).last_hidden_state
        start = torch.full((len(items), 1), recognizer.sot, dtype=torch.long)
        logits = recognizer.model(encoder_outputs=(encoded,), decoder_input_ids=start, use_cache=False).logits
        languages, _ = recognizer.first_step(items, logits[:, -1])
        groups: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item.context.strip()].append(index)
        tokens: list[list[int] | None] = [None] * len(items)
        for context, rows in groups.items():
            options: dict[str, Any] = {}
            if recognizer.multilingual:
                options.update(language=[languages[i] for i in rows], task="transcribe")
            if context:
                options["prompt_ids"] = recognizer.processor.get_prompt_ids(context, return_tensors="pt")
            out = recognizer.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded[rows]), return_timestamps=True,
                return_segments=True, force_unique_generate_call=True, do_sample=False, num_beams=1,
                max_new_tokens=recognizer.max_new_tokens, **options)
            for row, segments in zip(rows, out["segments"]):
                tokens[row] = [int(t) for segment in segments for t in segment["tokens"]]
    return [t or [] for t in tokens]
