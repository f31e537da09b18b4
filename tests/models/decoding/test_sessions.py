"""Decode sessions on the tiny Qwen3-ASR (with the row-gated adapter): rows that join at different steps,
leave, are cancelled or fail to join give exactly what decoding each row alone gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.decoding.session import decode_all
from models.mega_adapter import MegaAdapter
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.adapter import write_tiny_adapter
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.models.chirps import chirp
from tests.models.compare import assert_same_recognitions
from tests.models.qwen3_asr.generate_reference import generate_texts


def clip(seconds: float, seed: int) -> np.ndarray:
    return chirp(seconds, seed, base_hz=110.0, step_hz=80.0)


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> Qwen3ASRRecognizer:
    model, processor = build_tiny_qwen3_asr(seed=0)
    adapter = MegaAdapter.attach(model, write_tiny_adapter(tmp_path_factory.mktemp("adapter"), model, seed=1))
    return Qwen3ASRRecognizer(model, processor, device="cpu", dtype=torch.float32, adapter=adapter)


ITEMS = [RecognitionItem(clip(0.4, 1)), RecognitionItem(clip(12.0, 2), robust=True),
         RecognitionItem(clip(3.0, 3), language="en", context="Marianne"), RecognitionItem(clip(7.0, 4), robust=True),
         RecognitionItem(clip(1.5, 5), robust=True, language="de"), RecognitionItem(clip(5.0, 6))]


def run(session, schedule: dict[int, list[int]], cancel_at: dict[int, list[int]] | None = None):
    """Join ITEMS[i] for i in schedule[step] before that step; returns {index: result} and deltas."""
    results, deltas, step = {}, {}, 0
    cancel_at = cancel_at or {}
    while step <= max(schedule) or session.running:
        session.cancel(cancel_at.get(step, []))
        updates = session.join([(i, ITEMS[i]) for i in schedule.get(step, [])])
        updates += session.step()
        for update in updates:
            deltas.setdefault(update.key, []).append(update.delta)
            if update.result is not None:
                results[update.key] = update.result
        step += 1
    return results, deltas


def test_rows_joining_at_different_steps_equal_each_row_alone_and_the_generate_path(recognizer):
    # A short row first, then a far longer prompt (the running history must move right), then more rows
    # while others leave; base and robust rows mixed in the same steps.
    session = recognizer.open_session(8)
    results, deltas = run(session, {0: [0], 2: [1], 5: [2, 3], 9: [4], 30: [5]})
    alone = [recognizer.recognize([item])[0] for item in ITEMS]
    assert_same_recognitions([results[i] for i in range(len(ITEMS))], alone)
    assert [r.text for r in alone] == generate_texts(recognizer, ITEMS)
    assert session.running == 0
    for index, result in results.items():
        streamed = "".join(deltas[index]).strip()
        if ITEMS[index].language is not None:  # forced language: the answer is the text, streamed as decoded
            assert streamed and streamed == result.text
        else:  # text streams after the model's "language X<asr_text>" header (random weights may never write it)
            assert streamed == "" or streamed == result.text


def test_cancelled_rows_leave_and_the_others_are_unaffected(recognizer):
    session = recognizer.open_session(8)
    results, _ = run(session, {0: [1, 3], 1: [5]}, cancel_at={4: [3]})
    assert set(results) == {1, 5}
    assert_same_recognitions([results[1], results[5]], recognizer.recognize([ITEMS[1], ITEMS[5]]))


def test_a_join_that_fails_leaves_no_trace(recognizer):
    session = recognizer.open_session(8)
    session.join([(1, ITEMS[1])])
    with pytest.raises(ValueError, match="cy"):
        session.join([(5, ITEMS[5]), (9, RecognitionItem(clip(1.0, 9), language="cy"))])
    assert session.running == 1
    results, _ = run(session, {0: [5]})
    assert_same_recognitions([results[1], results[5]], recognizer.recognize([ITEMS[1], ITEMS[5]]))


def test_whole_batch_and_row_limit(recognizer):
    assert_same_recognitions(decode_all(recognizer.open_session(6), ITEMS), recognizer.recognize(ITEMS))
    session = recognizer.open_session(2)
    session.join([(0, ITEMS[0]), (1, ITEMS[1])])
    with pytest.raises(RuntimeError, match="at most 2"):
        session.join([(2, ITEMS[2])])
    assert session.running == 2
    assert session.row_bytes() > 0
