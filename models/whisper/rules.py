"""Whisper's decoding rules and segment timestamps, per row, as transformers' Whisper generate applies them.

transformers applies SuppressTokensAtBegin, SuppressTokens and WhisperTimeStamp processors to the whole
batch with one shared prompt length; rows of a running batch each have their own prompt and their own
generated tokens, so the same rules are applied here row by row (a port of those processors, in their
order, with the same arithmetic). `split_segments` is transformers' `_retrieve_segment` for one 30 s window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

TIME_PRECISION = 0.02  # seconds per timestamp token
WINDOW_POSITIONS = 1500  # a 30 s window in timestamp steps (3000 mel frames, stride 2)


@dataclass(frozen=True)
class WhisperRules:
    """The token ids the rules need, from a Whisper generation config."""

    eot: int
    no_timestamps: int
    timestamp_begin: int
    suppress: tuple[int, ...]
    begin_suppress: tuple[int, ...]
    max_initial_timestamp_index: int | None

    @classmethod
    def from_generation_config(cls, config) -> WhisperRules:
        return cls(eot=int(config.eos_token_id), no_timestamps=int(config.no_timestamps_token_id),
                   timestamp_begin=int(config.no_timestamps_token_id) + 1,
                   suppress=tuple(config.suppress_tokens or ()), begin_suppress=tuple(config.begin_suppress_tokens or ()),
                   max_initial_timestamp_index=getattr(config, "max_initial_timestamp_index", None))

    def apply(self, scores: torch.Tensor, generated: Sequence[Sequence[int]]) -> torch.Tensor:
        """scores [n, V] float32 (modified in place and returned); generated[i]: row i's tokens so far."""
        for row, tokens in enumerate(generated):
            if not tokens and self.begin_suppress:
                scores[row, list(self.begin_suppress)] = -math.inf
        if self.suppress:
            scores[:, list(self.suppress)] = -math.inf
        scores[:, self.no_timestamps] = -math.inf
        for row, tokens in enumerate(generated):
            self._timestamp_rules(scores[row], tokens)
        self._force_timestamp_when_likelier(scores)
        return scores

    def _timestamp_rules(self, scores: torch.Tensor, tokens: Sequence[int]) -> None:
        begin = self.timestamp_begin
        last_was_timestamp = len(tokens) >= 1 and tokens[-1] >= begin
        penultimate_was_timestamp = len(tokens) < 2 or tokens[-2] >= begin
        if last_was_timestamp:
            if penultimate_was_timestamp:  # timestamps come in pairs: after a pair, text
                scores[begin:] = -math.inf
            else:  # after one timestamp, another timestamp or the end
                scores[: self.eot] = -math.inf
        timestamps = [token for token in tokens if token >= begin]
        floor = begin  # timestamps never decrease, and <|0.00|> is not repeated
        if timestamps:
            floor = timestamps[-1] if last_was_timestamp and not penultimate_was_timestamp else timestamps[-1] + 1
        scores[begin:floor] = -math.inf
        if not tokens:  # the first token is a timestamp, at most max_initial_timestamp_index in
            scores[:begin] = -math.inf
            if self.max_initial_timestamp_index is not None:
                scores[begin + self.max_initial_timestamp_index + 1:] = -math.inf

    def _force_timestamp_when_likelier(self, scores: torch.Tensor) -> None:
        """If all timestamps together are likelier than the best text token, a timestamp comes next."""
        logprobs = torch.nn.functional.log_softmax(scores.float(), dim=-1)
        timestamp_logprob = logprobs[:, self.timestamp_begin:].logsumexp(dim=-1)
        best_text = logprobs[:, : self.timestamp_begin].max(dim=-1).values
        scores[:, : self.timestamp_begin].masked_fill_((timestamp_logprob > best_text)[:, None], -math.inf)


def split_segments(tokens: Sequence[int], timestamp_begin: int) -> list[tuple[float, float, list[int]]]:
    """A window's generated tokens (end token removed) -> [(start s, end s, tokens)], as transformers does:
    consecutive timestamp pairs close segments; an unfinished segment after the last pair is dropped unless
    the text ends with a single timestamp; without pairs the whole output is one segment."""
    tokens = list(tokens)
    is_timestamp = [token >= timestamp_begin for token in tokens]
    single_ending = is_timestamp[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_timestamp[i] and is_timestamp[i + 1]]
    if cuts:
        if single_ending:
            cuts.append(len(tokens))
        else:
            cuts[-1] += 1  # the last timestamp closes the last segment
        segments, last = [], 0
        for index, cut in enumerate(cuts):
            piece = tokens[last:cut]
            end_index = -1 if index < len(cuts) - 1 or single_ending else -2
            segments.append(((piece[0] - timestamp_begin) * TIME_PRECISION,
                             (piece[end_index] - timestamp_begin) * TIME_PRECISION, piece))
            last = cut
        return segments
    end = WINDOW_POSITIONS
    stamps = [token for token, stamp in zip(tokens, is_timestamp) if stamp]
    if stamps and stamps[-1] != timestamp_begin:
        end = stamps[-1] - timestamp_begin
    return [(0.0, end * TIME_PRECISION, tokens)]
