"""Batched Qwen3-ASR recognition on the tiny random-weight model: batch-independence, routes, budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.languages import QWEN3_ASR_LANGUAGES
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer, RowGatedAdapter, pad_short_clip
from models.recognition import SAMPLE_RATE, Recognition, RecognitionItem, Recognizer
from models.tiny.qwen3_asr import build_tiny_qwen3_asr, save_tiny_original
from tests.models.chirps import chirp
from tests.models.compare import assert_same_recognitions, same_recognition
from tests.models.qwen3_asr.generate_reference import generate_texts
from tests.models.qwen3_asr.scripted import ScriptedAdapter, ScriptedQwenRecognizer, answer_script


def clip(seconds: float, seed: int) -> np.ndarray:
    return chirp(seconds, seed, base_hz=150.0, step_hz=90.0)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_qwen3_asr(seed=0)


@pytest.fixture(scope="module")
def recognizer(tiny) -> Qwen3ASRRecognizer:
    model, processor = tiny
    return Qwen3ASRRecognizer(model, processor, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def scripted():
    """A separate model (the adapter hooks it) whose robust rows answer 'language English<asr_text>hi'."""
    model, processor = build_tiny_qwen3_asr(seed=0)
    adapter = ScriptedAdapter(model)
    return ScriptedQwenRecognizer(model, processor, device="cpu", dtype=torch.float32, adapter=adapter,
                                  script=answer_script(processor.tokenizer)), adapter


def test_is_a_recognizer(recognizer):
    assert isinstance(recognizer, Recognizer)


def test_mixed_length_batch_equals_one_by_one(recognizer):
    """Upstream QwenLM/Qwen3-ASR #207: a short item in a batch with long ones must not change."""
    items = [RecognitionItem(clip(0.3, 1)), RecognitionItem(clip(2.0, 2), context="Ada Lovelace"),
             RecognitionItem(clip(7.0, 3), language="en"), RecognitionItem(clip(12.0, 4))]
    batched = recognizer.recognize(items)
    alone = [recognizer.recognize([item])[0] for item in items]
    assert_same_recognitions(batched, alone)
    assert [r.text for r in batched] == generate_texts(recognizer, items)  # the previous generate() path
    assert len({r.text for r in batched}) == len(items)  # the rows really differ
    assert all(isinstance(r, Recognition) and r.num_tokens > 0 for r in batched)


def test_output_has_one_result_per_item_in_order(recognizer):
    items = [RecognitionItem(clip(1.0, seed)) for seed in (5, 6, 5)]
    results = recognizer.recognize(items)
    assert len(results) == 3 and same_recognition(results[0], results[2])
    assert recognizer.recognize([]) == []


def test_forced_language_prompt_and_result(recognizer):
    item = RecognitionItem(clip(1.0, 7), language="en", context="hotword")
    prompt = recognizer.prompt(item)
    assert prompt.startswith("<|im_start|>system\nhotword<|im_end|>\n<|im_start|>user\n<|audio_start|>")
    assert prompt.endswith("<|im_start|>assistant\nlanguage English<asr_text>")
    assert recognizer.prompt(RecognitionItem(clip(1.0, 7))).endswith("<|im_start|>assistant\n")
    assert recognizer.recognize([item])[0].language == "en"


def test_unsupported_forced_language_is_refused(recognizer):
    with pytest.raises(ValueError, match="cy"):
        recognizer.recognize([RecognitionItem(clip(1.0, 1)), RecognitionItem(clip(1.0, 1), language="cy")])


def test_token_budget_follows_duration_and_is_capped(tiny):
    model, processor = tiny
    recognizer = Qwen3ASRRecognizer(model, processor, max_new_tokens=100)
    assert [recognizer.token_budget(s) for s in (0.3, 1.0, 2.0, 7.0, 11.0, 12.0, 30.0)] == [16, 16, 24, 64, 96, 100,
                                                                                            100]
    custom = Qwen3ASRRecognizer(model, processor, tokens_per_second=4.0, min_new_tokens_budget=4)
    assert custom.token_budget(0.1) == 9 and custom.token_budget(60.0) == 248


def test_suppressed_end_tokens_make_every_row_decode_its_budget(tiny):
    model, processor = tiny
    recognizer = Qwen3ASRRecognizer(model, processor, tokens_per_second=3.5, min_new_tokens_budget=4,
                                    max_new_tokens=40, suppress_end_tokens=True)
    items = [RecognitionItem(clip(seconds, seed)) for seed, seconds in enumerate((0.3, 2.0, 5.0, 12.0))]
    results = recognizer.recognize(items)
    assert [r.num_tokens for r in results] == [recognizer.token_budget(i.duration) for i in items] == [10, 15, 26, 40]
    assert_same_recognitions(results, [recognizer.recognize([item])[0] for item in items])
    unsuppressed = Qwen3ASRRecognizer(model, processor, tokens_per_second=3.5, min_new_tokens_budget=4,
                                      max_new_tokens=40)
    assert unsuppressed.recognize(items[:1])[0].num_tokens < 10  # without suppression this row ends early


def test_robust_without_adapter_is_refused(recognizer):
    with pytest.raises(ValueError, match="no Mega-ASR adapter"):
        recognizer.recognize([RecognitionItem(clip(1.0, 1)), RecognitionItem(clip(1.0, 2), robust=True)])
    assert recognizer.languages(robust=False) == QWEN3_ASR_LANGUAGES
    assert recognizer.languages(robust=True) == frozenset()


def test_merged_adapter_serves_only_robust_rows(tiny):
    model, processor = tiny
    merged = Qwen3ASRRecognizer(model, processor, merged_robust=True)
    assert merged.languages(robust=True) == QWEN3_ASR_LANGUAGES and merged.languages(robust=False) == frozenset()
    assert len(merged.recognize([RecognitionItem(clip(1.0, 1), robust=True)])) == 1
    with pytest.raises(ValueError, match="merged"):
        merged.recognize([RecognitionItem(clip(1.0, 1))])


def test_adapter_gates_rows_in_item_order(scripted):
    recognizer, adapter = scripted
    assert isinstance(adapter, RowGatedAdapter)
    items = [RecognitionItem(clip(2.0, 1)), RecognitionItem(clip(6.0, 2), robust=True),
             RecognitionItem(clip(2.5, 3), robust=True), RecognitionItem(clip(1.0, 4))]
    adapter.calls.clear()
    results = recognizer.recognize(items)
    assert adapter.calls[0] == [False, True, True, False]  # the prefill of the four rows, in item order
    assert adapter.layouts[-1][0] == 4  # the encoder's input covered the same four rows
    # Every decode step k gates exactly the rows still running (those that generated more than k tokens),
    # with the robust ones marked: a row holds num_tokens + its end token, or its whole budget.
    generated = [r.num_tokens + 1 if r.num_tokens < recognizer.token_budget(i.duration) else r.num_tokens
                 for r, i in zip(results, items)]
    for step, call in enumerate(adapter.calls[1:], start=1):
        running = [item for item, count in zip(items, generated) if count > step]
        assert sorted(call) == sorted(item.robust for item in running)
    assert len(adapter.calls) == max(generated)  # one prefill + one call per step
    script_length = len(recognizer.script) - 1  # tokens before the end token
    for result in (results[1], results[2]):
        assert result.text == "hi" and result.language == "en" and result.num_tokens == script_length
        # the scripted choice is the only token left after the rules: probability 1
        assert result.avg_logprob == pytest.approx(0.0)
    assert results[0].text != "hi" and results[3].text != "hi"
    assert_same_recognitions(results, [recognizer.recognize([item])[0] for item in items])
    assert recognizer.languages(robust=True) == QWEN3_ASR_LANGUAGES


def test_each_row_keeps_its_own_budget_and_end(scripted):
    recognizer, _ = scripted
    tokenizer = recognizer.processor.tokenizer
    recognizer.script = [tokenizer.convert_tokens_to_ids("Z")]  # robust rows never end: they use their budget
    try:
        items = [RecognitionItem(clip(1.0, 1), robust=True), RecognitionItem(clip(6.0, 2), robust=True),
                 RecognitionItem(clip(12.0, 3))]
        results = recognizer.recognize(items)
    finally:
        recognizer.script = answer_script(tokenizer)
    assert [r.num_tokens for r in results[:2]] == [16, 56]
    # A runaway repetition is reported as decoded; the service's guards cut it (tests/app/engine/test_guards.py).
    assert results[0].text == "Z" * 16 and results[1].text == "Z" * 56
    assert results[0].language is None


def test_short_clips_are_zero_padded_to_half_a_second(recognizer):
    short = clip(0.1, 1)
    padded = pad_short_clip(short)
    assert padded.shape == (SAMPLE_RATE // 2,) and np.array_equal(padded[: short.size], short)
    assert not padded[short.size:].any()
    assert pad_short_clip(clip(0.6, 1)).shape == (int(0.6 * SAMPLE_RATE),)
    assert len(recognizer.recognize([RecognitionItem(short), RecognitionItem(np.zeros(0, np.float32))])) == 2


def test_from_dir_loads_the_original_layout_with_an_adapter(tmp_path, tiny):
    directory = save_tiny_original(tmp_path / "orig", seed=0)
    attached = []

    def factory(model):
        adapter = ScriptedAdapter(model)
        attached.append(model)
        return adapter

    loaded = Qwen3ASRRecognizer.from_dir(directory, device="cpu", dtype="float32", adapter_factory=factory,
                                         max_new_tokens=32)
    assert attached == [loaded.model] and loaded.max_new_tokens == 32
    model, processor = tiny
    reference = Qwen3ASRRecognizer(model, processor, max_new_tokens=32)
    item = RecognitionItem(clip(3.0, 9))
    assert_same_recognitions(loaded.recognize([item]), reference.recognize([item]))
