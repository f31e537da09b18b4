"""Qwen3-ASR tiny in real bf16 (torch's bf16 kernels) against fp32: logits within a stated tolerance, and
greedy tokens equal to fp32's wherever fp32's margin allows.

Tolerance (teacher-forced on fp32's greedy sequence, per item): max |logit_bf16 - logit_fp32| <= 0.12 and
mean <= 0.02 times the standard deviation of the fp32 logits (measured on this CPU: <= 0.092 and
<= 0.013). Greedy decoding may only part ways with fp32 at a step where fp32's top-two margin is smaller
than twice that step's largest logit error (only then can rounding swap the top two tokens).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.models.qwen3_asr.test_recognizer import clip

MAX_TOLERANCE, MEAN_TOLERANCE = 0.12, 0.02  # x std of the fp32 logits
SECONDS = (0.7, 1.5, 2.0, 3.0, 4.0, 6.0, 9.0, 12.0)
STEPS = 32


@dataclass
class Comparison:
    fp32_tokens: list[int]
    other_tokens: list[int]
    margin: torch.Tensor  # [steps] fp32 top-1 minus top-2 logit, teacher-forced on fp32's tokens
    error: torch.Tensor  # [steps] max |logit difference| per step
    mean_error: float  # mean |logit difference| over every step and token
    scale: float  # std of the fp32 logits

    @property
    def first_divergence(self) -> int | None:
        pairs = list(zip(self.fp32_tokens, self.other_tokens))
        index = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
        return None if index == len(pairs) and len(self.fp32_tokens) == len(self.other_tokens) else index

    def divergence_is_explained(self) -> bool:
        step = self.first_divergence
        return step is None or bool(self.margin[step] < 2 * self.error[step])


def inputs(processor, recognizer: Qwen3ASRRecognizer, item: RecognitionItem, dtype: torch.dtype,
           device: str = "cpu") -> dict:
    encoded = processor(text=[recognizer.prompt(item)], audio=[item.audio], return_tensors="pt")
    batch = {k: v.to(device) for k, v in encoded.items()}
    batch["input_features"] = batch["input_features"].to(dtype)
    return batch


def compare(fp32_model, other_model, processor, item: RecognitionItem, dtype: torch.dtype,
            device: str = "cpu") -> Comparison:
    recognizer = Qwen3ASRRecognizer(fp32_model, processor)
    options = {"max_new_tokens": STEPS, "do_sample": False, "eos_token_id": recognizer.eos_ids,
               "pad_token_id": recognizer.pad_id}
    reference, other = inputs(processor, recognizer, item, torch.float32, device), inputs(
        processor, recognizer, item, dtype, device)
    prompt = reference["input_ids"].shape[1]
    with torch.inference_mode():
        fp32_sequence = fp32_model.generate(**reference, **options)
        other_sequence = other_model.generate(**other, **options)
        forced = {"input_ids": fp32_sequence, "attention_mask": torch.ones_like(fp32_sequence)}
        fp32_logits = fp32_model(**{**reference, **forced}).logits[0, prompt - 1:-1].float()  # [steps, V]
        other_logits = other_model(**{**other, **forced}).logits[0, prompt - 1:-1].float()
    top = fp32_logits.topk(2, dim=-1).values
    return Comparison(fp32_sequence[0, prompt:].tolist(), other_sequence[0, prompt:].tolist(),
                      margin=(top[:, 0] - top[:, 1]).cpu(), error=(other_logits - fp32_logits).abs().amax(-1).cpu(),
                      mean_error=float((other_logits - fp32_logits).abs().mean()), scale=float(fp32_logits.std()))


def check_bf16_against_fp32(comparisons: list[Comparison]) -> None:
    for c in comparisons:
        assert float(c.error.max()) <= MAX_TOLERANCE * c.scale
        assert c.mean_error <= MEAN_TOLERANCE * c.scale
        assert c.divergence_is_explained(), (c.first_divergence, c.margin, c.error)
    agreeing = sum(c.first_divergence is None for c in comparisons)
    assert agreeing >= len(comparisons) // 2  # the check is not vacuous: most rows agree entirely


@pytest.fixture(scope="module")
def models():
    model, processor = build_tiny_qwen3_asr(seed=0)
    return model, copy.deepcopy(model).to(torch.bfloat16), processor


def test_real_bf16_logits_and_greedy_tokens_follow_fp32(models):
    fp32_model, bf16_model, processor = models
    comparisons = [compare(fp32_model, bf16_model, processor, RecognitionItem(clip(s, i)), torch.bfloat16)
                   for i, s in enumerate(SECONDS)]
    check_bf16_against_fp32(comparisons)


def test_the_check_fails_for_a_model_that_is_not_fp32_rounded(models):
    fp32_model, _, processor = models
    perturbed = copy.deepcopy(fp32_model)
    with torch.no_grad():
        for parameter in perturbed.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    comparisons = [compare(fp32_model, perturbed, processor, RecognitionItem(clip(s, i)), torch.float32)
                   for i, s in enumerate(SECONDS[:3])]
    with pytest.raises(AssertionError):
        check_bf16_against_fp32(comparisons)
