"""Word times from Whisper's cross-attention: the arithmetic of openai/whisper's timing.py, model-free.

Given the alignment heads' attention of every decoded token over the 20 ms encoder frames: each head's weights
are normalised over the tokens, median-filtered along time (width 7) and averaged over heads; dynamic time
warping then finds the monotonic token -> frame path, and a word starts where the path reaches its first
token. Sub-word tokens merge into words (a token starting with a space starts a word; languages written
without spaces split on characters), punctuation joins its neighbour, and implausibly long words at a
sentence end or after a pause are shortened, as openai/whisper does.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

FRAMES_PER_SECOND = 50  # encoder frames: 3000 mel frames of 10 ms, stride 2
MEDIAN_FILTER_WIDTH = 7
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END = ".。!！?？"
UNSPACED_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


@dataclass
class TimedWord:
    """A word as Whisper's tokens write it (leading space, punctuation attached), times in seconds."""

    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of `width` along the last dimension, reflect-padded (openai's filter)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    padded = torch.nn.functional.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(shape)


def alignment_matrix(weights: torch.Tensor) -> np.ndarray:
    """weights [heads, tokens, frames] (softmaxed over the frames) -> [tokens, frames] token/frame affinity."""
    std, mean = torch.std_mean(weights.float(), dim=-2, keepdim=True, unbiased=False)
    normalised = (weights.float() - mean) / std.clamp_min(1e-10)
    return median_filter(normalised, MEDIAN_FILTER_WIDTH).mean(dim=0).numpy().astype(np.float64)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path through cost [N, M] (steps: diagonal, down, right), as openai's dtw_cpu;
    returns (token indices, frame indices) along the path.

    Row by row: within a row, cost[i, j] = x[i, j] + min(from above at j, cost[i, j-1]), which unrolls to
    S_j + min over k <= j of (from above at k - S_{k-1}) with S the row's prefix sums: one cumulative minimum
    per row instead of a Python loop over every cell.
    """
    rows, columns = cost.shape
    previous = np.full(columns + 1, np.inf)
    previous[0] = 0.0
    trace = np.empty((rows, columns), dtype=np.int8)  # 0 diagonal, 1 down, 2 right
    for i in range(rows):
        diagonal, down = previous[:-1], previous[1:]
        from_above = np.minimum(diagonal, down)
        sums = np.cumsum(cost[i])
        entry = from_above - (sums - cost[i])
        best = np.minimum.accumulate(entry)
        best_before = np.concatenate(([np.inf], best[:-1]))
        trace[i] = np.where(best_before <= entry, 2, np.where(diagonal <= down, 0, 1))
        previous = np.concatenate(([np.inf], sums + best))
    return _backtrace(trace)


def _backtrace(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = trace.shape
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = 2 if i == 0 else 1 if j == 0 else trace[i - 1, j - 1]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    indices = np.array(path[::-1]).T
    return indices[0], indices[1]


def split_words(tokens: Sequence[int], decode: Callable[[list[int]], str], language: str | None,
                eot: int) -> tuple[list[str], list[list[int]]]:
    """Tokens -> words (openai's split_to_word_tokens): on complete characters for languages written without
    spaces, else a word starts at a token with a leading space, a punctuation mark or a special token."""
    pieces, piece_tokens = _split_on_unicode(tokens, decode)
    if language in UNSPACED_LANGUAGES:
        return pieces, piece_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for piece, ids in zip(pieces, piece_tokens):
        if ids[0] >= eot or piece.startswith(" ") or piece.strip() in string.punctuation or not words:
            words.append(piece)
            word_tokens.append(list(ids))
        else:
            words[-1] += piece
            word_tokens[-1].extend(ids)
    return words, word_tokens


def _split_on_unicode(tokens: Sequence[int], decode: Callable[[list[int]], str]) -> tuple[list[str], list[list[int]]]:
    full = decode(list(tokens))
    pieces: list[str] = []
    piece_tokens: list[list[int]] = []
    current: list[int] = []
    offset = 0
    for token in tokens:
        current.append(token)
        decoded = decode(current)
        if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
            pieces.append(decoded)
            piece_tokens.append(current)
            current = []
            offset += len(decoded)
    return pieces, piece_tokens


def word_times(matrix: np.ndarray, words: list[str], word_tokens: list[list[int]],
               token_probs: Sequence[float]) -> list[TimedWord]:
    """DTW over matrix [text tokens + 1, frames] (the last word of `words` is the end token) -> timed words."""
    if len(word_tokens) <= 1:
        return []
    token_indices, frame_indices = dtw(-matrix)
    jumps = np.pad(np.diff(token_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = frame_indices[jumps] / FRAMES_PER_SECOND
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    return [TimedWord(word, tokens, float(jump_times[a]), float(jump_times[b]),
                      float(np.mean(token_probs[a:b])) if b > a else 0.0)
            for word, tokens, a, b in zip(words[:-1], word_tokens[:-1], bounds[:-1], bounds[1:])]


def merge_punctuation(words: list[TimedWord]) -> list[TimedWord]:
    """Opening marks join the next word, closing marks the previous one (openai's merge_punctuations)."""
    merged = [TimedWord(w.word, list(w.tokens), w.start, w.end, w.probability) for w in words]
    for i in range(len(merged) - 2, -1, -1):  # prepend, right to left
        before, after = merged[i], merged[i + 1]
        if before.word.startswith(" ") and before.word.strip() in PREPEND_PUNCTUATION and before.tokens:
            after.word, after.tokens = before.word + after.word, before.tokens + after.tokens
            before.word, before.tokens = "", []
    for i in range(1, len(merged)):  # append, left to right
        before, after = merged[i - 1], merged[i]
        if not before.word.endswith(" ") and after.word in APPEND_PUNCTUATION and before.tokens:
            before.word, before.tokens = before.word + after.word, before.tokens + after.tokens
            after.word, after.tokens = "", []
    return [w for w in merged if w.word]


def shorten_long_words(words: list[TimedWord]) -> list[TimedWord]:
    """openai's heuristics against words stretched over a pause: a word longer than twice the median word
    (median capped at 0.7 s) next to a sentence end is cut to that length, and so is a first word after a
    long pause."""
    durations = np.array([w.end - w.start for w in words])
    durations = durations[durations.nonzero()]
    if len(durations) == 0:
        return words
    median = min(0.7, float(np.median(durations)))
    longest = 2 * median
    for i in range(1, len(words)):
        if words[i].end - words[i].start > longest:
            if words[i].word in SENTENCE_END:
                words[i].end = words[i].start + longest
            elif words[i - 1].word in SENTENCE_END:
                words[i].start = words[i].end - longest
    first = words[0]
    if first.end > 4 * median and first.end - first.start > longest:
        first.start = max(0.0, first.end - longest)
    return words
