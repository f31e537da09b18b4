"""On a real NVIDIA GPU (skipped elsewhere; run by scripts/gpu_check.sh): device/dtype selection, Qwen3-ASR
tiny in bf16 (batched == alone, and close to fp32), and the mixed-route LoRA gate on CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from models.device import resolve_placement, select_device_and_dtype
from models.mega_adapter import MegaAdapter, merge_adapter
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.adapter import write_tiny_adapter
from models.tiny.qwen3_asr import build_tiny_qwen3_asr
from tests.models.qwen3_asr.test_bf16 import SECONDS, check_bf16_against_fp32, compare
from tests.models.qwen3_asr.test_recognizer import clip

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32_matmuls():
    """fp32 comparisons on CUDA must not run in TF32 (cuDNN convolutions default to it)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def answers(results) -> list[tuple]:
    """What was decoded (text, language, tokens); the float confidence depends on the kernels' batch shape."""
    return [(r.text, r.language, r.num_tokens) for r in results]


def test_auto_resolves_to_cuda_in_bf16():
    placement = resolve_placement()
    assert placement.device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert placement.dtype == expected and placement.reason.startswith("auto: CUDA")
    assert select_device_and_dtype("cuda:0", "float32") == (torch.device("cuda:0"), torch.float32)
    assert select_device_and_dtype("cpu", "auto")[0] == torch.device("cpu")


def tiny_on_cuda(dtype: torch.dtype) -> tuple[Qwen3ASRRecognizer, object]:
    model, processor = build_tiny_qwen3_asr(seed=0)
    model = model.to(CUDA, dtype)
    return Qwen3ASRRecognizer(model, processor, device=CUDA, dtype=dtype, max_new_tokens=24), processor


def test_tiny_qwen_in_bf16_on_cuda_batched_equals_alone():
    recognizer, _ = tiny_on_cuda(torch.bfloat16)
    items = [RecognitionItem(clip(s, i), language="en" if i % 2 else None)
             for i, s in enumerate((0.3, 2.0, 7.0, 12.0))]
    batched = answers(recognizer.recognize(items))
    alone = [answers(recognizer.recognize([item]))[0] for item in items]
    differing = [i for i, (a, b) in enumerate(zip(batched, alone)) if a != b]
    assert not differing, f"rows {differing} change with their neighbours in bf16 on CUDA: {batched} vs {alone}"


def test_tiny_qwen_in_bf16_on_cuda_follows_fp32():
    fp32_model, processor = build_tiny_qwen3_asr(seed=0)
    fp32_model = fp32_model.to(CUDA)
    bf16_model = copy.deepcopy(fp32_model).to(torch.bfloat16)
    comparisons = [compare(fp32_model, bf16_model, processor, RecognitionItem(clip(s, i)), torch.bfloat16,
                           device="cuda") for i, s in enumerate(SECONDS)]
    check_bf16_against_fp32(comparisons)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixed_route_lora_gate_on_cuda(tmp_path, dtype):
    """A mixed batch gives robust rows the merged model's tokens and base rows the plain model's; the gate's
    row indices live on the GPU; the base weights stay untouched."""
    gated_model, processor = build_tiny_qwen3_asr(seed=0)
    adapter_dir = write_tiny_adapter(tmp_path / "adapter", gated_model, seed=2)
    plain_model, merged_model = copy.deepcopy(gated_model), copy.deepcopy(gated_model)
    merge_adapter(merged_model, adapter_dir)  # merged in fp32, then cast: the reference for robust rows
    models = [m.to(CUDA, dtype) for m in (gated_model, plain_model, merged_model)]
    adapter = MegaAdapter.attach(models[0], adapter_dir)
    gated = Qwen3ASRRecognizer(models[0], processor, device=CUDA, dtype=dtype, adapter=adapter, max_new_tokens=12)
    plain = Qwen3ASRRecognizer(models[1], processor, device=CUDA, dtype=dtype, max_new_tokens=12)
    merged = Qwen3ASRRecognizer(models[2], processor, device=CUDA, dtype=dtype, merged_robust=True,
                                max_new_tokens=12)
    before = {k: v.clone() for k, v in models[0].state_dict().items()}
    audios = [clip(1.3, 0), clip(2.6, 1), clip(0.7, 2), clip(3.1, 3)]
    robust = [True, False, False, True]
    mixed = answers(gated.recognize([RecognitionItem(a, robust=r, language="en") for a, r in zip(audios, robust)]))
    assert adapter.gate.device.type == "cuda"
    base_alone = answers(plain.recognize([RecognitionItem(a, language="en") for a in audios]))
    assert [mixed[i] for i in (1, 2)] == [base_alone[i] for i in (1, 2)]
    if dtype == torch.float32:  # bf16: W + BA rounded once differs from W x + B(A x) by rounding alone
        robust_alone = answers(merged.recognize([RecognitionItem(a, robust=True, language="en") for a in audios]))
        assert [mixed[i] for i in (0, 3)] == [robust_alone[i] for i in (0, 3)]
    assert any(mixed[i][0] != base_alone[i][0] for i in (0, 3))  # the adapter acts on robust rows
    assert all(torch.equal(before[k], v) for k, v in models[0].state_dict().items())


def test_rows_joining_mid_decode_on_cuda_equal_each_row_alone(tmp_path):
    """The decode session on the GPU: slot cache, masks and LoRA gate on the device, rows joining later."""
    model, processor = build_tiny_qwen3_asr(seed=0)
    adapter_dir = write_tiny_adapter(tmp_path / "adapter", model, seed=2)
    model = model.to(CUDA)
    recognizer = Qwen3ASRRecognizer(model, processor, device=CUDA, dtype=torch.float32,
                                    adapter=MegaAdapter.attach(model, adapter_dir), max_new_tokens=24)
    items = [RecognitionItem(clip(s, i), robust=bool(i % 2), language="en" if i == 2 else None)
             for i, s in enumerate((0.4, 12.0, 3.0, 7.0))]
    session, results, step = recognizer.open_session(4), {}, 0
    while step < 6 or session.running:
        joining = {0: [0], 2: [1], 5: [2, 3]}.get(step, [])
        for update in session.join([(i, items[i]) for i in joining]) + session.step():
            if update.result is not None:
                results[update.key] = update.result
        step += 1
    assert answers([results[i] for i in range(4)]) == [answers(recognizer.recognize([it]))[0] for it in items]
