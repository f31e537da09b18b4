"""ChosenLogprobs: the log-probability of each greedy choice, averaged openai/whisper's way."""

from __future__ import annotations

import math

import pytest
import torch

from models.confidence import ChosenLogprobs


def test_records_the_greedy_choice_and_averages_to_the_end_token():
    recorder = ChosenLogprobs()
    steps = [torch.tensor([[0.0, math.log(3.0), 0.0], [math.log(4.0), 0.0, 0.0]]),  # row 0 picks 1, row 1 picks 0
             torch.tensor([[0.0, 0.0, math.log(8.0)], [0.0, 0.0, math.log(8.0)]]),  # both pick 2 (the end token)
             torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])]
    for scores in steps:
        assert recorder(torch.zeros(2, 1, dtype=torch.long), scores) is scores  # the scores are not changed
    p1, p2 = math.log(3 / 5), math.log(8 / 10)
    assert recorder.average_to_end(0, end_token=2) == pytest.approx((p1 + p2) / 2)
    assert recorder.average(1, 3) == pytest.approx((math.log(4 / 6) + p2 + math.log(1 / 3)) / 3)
    assert recorder.average_to_end(1, end_token=7) == pytest.approx(recorder.average(1, 3))  # never ended
    assert recorder.average(0, 0) is None and ChosenLogprobs().average_to_end(0, 2) is None
