"""A real (tiny, random-weight) Qwen3-ASR whose robust rows say a scripted answer: the decode session masks
every other token after the model's own rules, so the model runs for real and only the choice is forced."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch

from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.qwen3_asr.session import Qwen3ASRSession


class ScriptedAdapter:
    """Row-gated stand-in for the Mega-ASR adapter: records the rows of every forward pass it gates."""

    def __init__(self, model=None) -> None:
        self.calls: list[list[bool]] = []
        self.layouts: list[tuple[int, ...]] = []

    @contextlib.contextmanager
    def rows(self, robust: Sequence[bool]) -> Iterator[None]:
        self.calls.append(list(robust))
        yield

    def audio_layout(self, features_mask: torch.Tensor) -> None:
        self.layouts.append(tuple(features_mask.shape))


class ScriptedSession(Qwen3ASRSession):
    def rules(self, rows, scores):
        scores = super().rules(rows, scores)
        script = self.recognizer.script
        for index, row in enumerate(rows):
            if row.item.robust:  # like every decoding rule, only masks: all other tokens -> -inf
                token = script[min(len(row.tokens), len(script) - 1)]
                kept = scores[index, token].item()
                scores[index] = -math.inf
                scores[index, token] = kept
        return scores


class ScriptedQwenRecognizer(Qwen3ASRRecognizer):
    """Robust rows answer `script` (token ids); base rows decode freely."""

    def __init__(self, *args, script: list[int] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.script = script or [0]

    def open_session(self, max_rows: int) -> ScriptedSession:
        return ScriptedSession(self, max_rows)


def answer_script(tokenizer, text: str = "language English<asr_text>hi") -> list[int]:
    """`text` then the end token (the default: 19 tokens, then <|im_end|>)."""
    return tokenizer.encode(text) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
