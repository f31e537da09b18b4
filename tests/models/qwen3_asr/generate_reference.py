"""The previous decoding path, kept as the reference the session must equal: one transformers generate()
over the whole batch (stock encoder forward, DynamicCache, left-padded prompts)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from models.qwen3_asr.output import parse_asr_output
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem


def generate_tokens(recognizer: Qwen3ASRRecognizer, items: Sequence[RecognitionItem]) -> list[list[int]]:
    """Each row's generated tokens up to (not including) its end token, within its own budget."""
    batch = recognizer.collate([recognizer.encode(item) for item in items])
    budgets = [recognizer.token_budget(item.duration) for item in items]
    adapter = recognizer.adapter
    gate = adapter.rows([item.robust for item in items]) if adapter is not None else contextlib.nullcontext()
    with torch.inference_mode(), gate:
        sequences = recognizer.model.generate(**batch, max_new_tokens=max(budgets), do_sample=False, num_beams=1,
                                              eos_token_id=recognizer.eos_ids, pad_token_id=recognizer.pad_id)
    rows = sequences[:, batch["input_ids"].shape[1]:].tolist()
    out = []
    for tokens, budget in zip(rows, budgets):
        tokens = tokens[:budget]
        end = next((i for i, token in enumerate(tokens) if token in recognizer.eos_ids), len(tokens))
        out.append(tokens[:end])
    return out


def generate_texts(recognizer: Qwen3ASRRecognizer, items: Sequence[RecognitionItem]) -> list[str]:
    decode = recognizer.processor.tokenizer.decode
    return [parse_asr_output(decode(tokens, skip_special_tokens=True), item.language)[1]
            for tokens, item in zip(generate_tokens(recognizer, items), items)]
