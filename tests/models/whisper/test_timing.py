"""models.whisper.timing: the DTW, median filter and word merging that turn cross-attention into word times."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.whisper.timing import TimedWord, dtw, median_filter, merge_punctuation, split_words, word_times


def dtw_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """openai/whisper's dtw_cpu, cell by cell (ties resolved the same way: diagonal, down, then right)."""
    rows, columns = x.shape
    cost = np.full((rows + 1, columns + 1), np.inf)
    trace = -np.ones((rows + 1, columns + 1))
    cost[0, 0] = 0
    for j in range(1, columns + 1):
        for i in range(1, rows + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            c, t = (c0, 0) if c0 < c1 and c0 < c2 else (c1, 1) if c1 < c0 and c1 < c2 else (c2, 2)
            cost[i, j], trace[i, j] = x[i - 1, j - 1] + c, t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = rows, columns, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    path = np.array(path[::-1]).T
    return path[0], path[1]


@pytest.mark.parametrize("shape", [(1, 5), (4, 4), (7, 60), (12, 150)])
def test_dtw_finds_the_same_path_as_openais_cell_by_cell_version(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        x = rng.standard_normal(shape)
        tokens, frames = dtw(x)
        expected_tokens, expected_frames = dtw_reference(x)
        np.testing.assert_array_equal(tokens, expected_tokens)
        np.testing.assert_array_equal(frames, expected_frames)


def test_median_filter_matches_a_sliding_median_with_reflected_edges():
    x = torch.randn(2, 3, 40)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3)), mode="reflect")
    expected = np.stack([np.median(padded[..., i:i + 7], axis=-1) for i in range(40)], axis=-1)
    np.testing.assert_allclose(median_filter(x, 7).numpy(), expected, rtol=1e-6)


def test_tokens_merge_into_words_at_spaces_and_punctuation():
    pieces = {1: " Go", 2: " for", 3: "ward", 4: ",", 5: " ten", 6: ".", 99: "<eot>"}
    decode = lambda tokens: "".join(pieces[t] for t in tokens)
    words, tokens = split_words([1, 2, 3, 4, 5, 6, 99], decode, "en", eot=99)
    assert words == [" Go", " forward", ",", " ten", ".", "<eot>"]
    assert tokens == [[1], [2, 3], [4], [5], [6], [99]]
    chars, _ = split_words([1, 2], decode, "zh", eot=99)
    assert chars == [" Go", " for"]  # languages without spaces: every complete piece is a word


def test_word_times_follow_the_path_and_punctuation_joins_its_neighbour():
    # Three tokens, each attending to its own 10-frame block, then the end token.
    matrix = np.full((4, 40), -1.0)
    for row in range(4):
        matrix[row, 10 * row: 10 * row + 10] = 1.0
    timed = word_times(matrix, [" a", " b", ".", "<eot>"], [[1], [2], [3], [99]], [0.9, 0.5, 0.7])
    assert [(w.word, w.start, w.end) for w in timed] == [(" a", 0.0, 0.2), (" b", 0.2, 0.4), (".", 0.4, 0.6)]
    merged = merge_punctuation(timed)
    assert [w.word for w in merged] == [" a", " b."] and merged[1].tokens == [2, 3]
    assert merged[0].probability == pytest.approx(0.9)


def test_an_opening_quote_joins_the_next_word():
    words = [TimedWord(' "', [1], 0.0, 0.1, 1.0), TimedWord("Hi", [2], 0.1, 0.4, 1.0)]
    assert [w.word for w in merge_punctuation(words)] == [' "Hi']
