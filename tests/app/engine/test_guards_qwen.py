"""The production recognizer's answers through the same guards: the real (tiny, random-weight) Qwen3-ASR,
made to say what Qwen3-ASR says on noise by a scripted adapter on its robust rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.guards import GuardConfig, GuardEvent
from app.engine.pipeline import Pipeline, SegmentJob
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.models.qwen3_asr.scripted import ScriptedAdapter, ScriptedQwenRecognizer


def noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, int(seconds * 16_000)).astype(np.float32)


@pytest.fixture(scope="module")
def scripted():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only spin
    model, processor = build_tiny_qwen3_asr(seed=0)
    recognizer = ScriptedQwenRecognizer(model, processor, device="cpu", dtype=torch.float32,
                                        adapter=ScriptedAdapter())
    yield Pipeline(recognizer, None, routing="always_robust", guards=GuardConfig()), recognizer
    torch.set_num_threads(threads)


def test_language_none_is_empty_text_with_no_speech(scripted):
    pipeline, scripted_recognizer = scripted
    tokenizer = pipeline.recognizer.processor.tokenizer
    scripted_recognizer.script = tokenizer.encode("language None<asr_text>") + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    [result] = pipeline.run_batch([SegmentJob(noise(2.0, 1))])
    assert result.text == "" and result.language is None and result.route == "robust"
    assert result.guards == ()  # the model itself said no speech: nothing for the guards to do


def test_a_loop_on_noise_is_blanked_and_a_loop_after_words_is_cut(scripted):
    pipeline, scripted_recognizer = scripted
    tokenizer = pipeline.recognizer.processor.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    scripted_recognizer.script = tokenizer.encode("language Korean<asr_text>" + "고기, " * 30) + [end]
    [looped] = pipeline.run_batch([SegmentJob(noise(30.0, 2))])
    assert looped.text == "" and looped.guards == (GuardEvent("repetition", "blank"),)
    scripted_recognizer.script = tokenizer.encode("language English<asr_text>go forward ten meters " + "meters " * 20) + [end]
    [cut] = pipeline.run_batch([SegmentJob(noise(30.0, 3))])
    assert cut.text == "go forward ten meters" and cut.flags == ("repetition",)
    # a forced language the text cannot be in: blanked, the forced language reported
    scripted_recognizer.script = tokenizer.encode("고기 먹자") + [end]
    [script] = pipeline.run_batch([SegmentJob(noise(2.0, 4), language="en")])
    assert script.text == "" and script.language == "en" and script.guards == (GuardEvent("script", "blank"),)
