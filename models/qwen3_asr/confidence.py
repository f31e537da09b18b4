"""The decoder's confidence in what greedy decoding picked, kept while generate() runs.

An interim for the batched recognizer (the continuous-batching decode loop keeps these scores itself): a
logits processor placed last sees the scores greedy decoding picks from, so the chosen token's log-probability
is the maximum of their log-softmax. Only [B] floats per step are kept, never the [B, vocab] scores.
"""

from __future__ import annotations

import torch


class ChosenLogprobs:
    """Callable as a transformers logits processor; leaves the scores unchanged."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []  # [B] per decoding step

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(scores.float().log_softmax(dim=-1).amax(dim=-1).cpu())
        return scores

    def average(self, row: int, count: int) -> float | None:
        """openai/whisper's avg_logprob of a row's first `count` tokens (its text tokens plus its end token
        when it ended): their summed log-probability / count. None for no tokens."""
        if count <= 0 or not self.steps:
            return None
        picked = torch.stack(self.steps[:count], dim=1)[row]  # [count]
        return float(picked.sum()) / count
