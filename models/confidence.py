"""The decoder's confidence in what greedy decoding picked, kept while generate() runs.

An interim for the recognizers that decode with transformers' generate() (a decode loop of our own keeps
these scores itself): a logits processor placed last sees the scores greedy decoding picks from (after the
model's own processors: Whisper's timestamp rules and suppressed tokens), so the chosen token's
log-probability is the maximum of their log-softmax. Only [B] floats per step are kept, never [B, vocab].
"""

from __future__ import annotations

from typing import Any

import torch


class ChosenLogprobs:
    """Callable as a transformers logits processor; leaves the scores unchanged."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []  # [B] log-probability of the greedy choice, per decoding step
        self.tokens: list[torch.Tensor] = []  # [B] the greedy choice, per decoding step

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        best = scores.float().log_softmax(dim=-1).max(dim=-1)
        self.steps.append(best.values)  # kept on the device: a copy per step would stall the decode loop
        self.tokens.append(best.indices)
        return scores

    def average(self, row: int, count: int) -> float | None:
        """openai/whisper's avg_logprob of a row's first `count` tokens (its text tokens plus its end token
        when it ended): their summed log-probability / count. None for no tokens."""
        if count <= 0 or not self.steps:
            return None
        picked = torch.stack(self.steps[:count], dim=1)[row]  # [count]
        return float(picked.sum().cpu()) / count

    def average_to_end(self, row: int, end_token: int) -> float | None:
        """avg_logprob of a row's tokens up to and including its first `end_token` (all steps if none)."""
        chosen = torch.stack(self.tokens, dim=1)[row].cpu().tolist() if self.tokens else []
        ends = [step for step, token in enumerate(chosen) if token == end_token]
        return self.average(row, ends[0] + 1 if ends else len(chosen))


def processors(*processors: object) -> Any:
    """A transformers LogitsProcessorList (imported here: models load transformers lazily)."""
    from transformers import LogitsProcessorList

    return LogitsProcessorList(processors)
