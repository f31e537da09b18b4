"""Which Linear layers each recognizer packs into int8 (or fp16) weights, chosen per part by measurement.

Measured per layer shape at the sizes each part runs at (`python -m bench.kernels`, 1 thread, AMD EPYC limited
to AVX2: bench/results/kernels-avx2.json; native AVX512-VNNI: kernels-native.json), int8 with per-row
activation scales against fp32:
- encoders run ~1500 (Whisper) or ~13 per second of audio (Qwen3-ASR) rows per clip: 1.6-2x on AVX2;
- decode steps run one row per running segment: 1.4-1.7x for Whisper's 384/512-wide decoder layers, 5-8x for
  the 51865-row output projection and Qwen3-ASR's 2048/6144 layers (a step reads the weights, and int8 weights
  are a quarter of fp32's); the Whisper decoder's cross-attention keys and values run over the encoder's
  1500 frames once per segment, so they follow the encoder's rule;
- prefill of the Qwen3-ASR prompt (~430 rows at 30 s): ~2x.
Whisper tiny's 384-wide encoder layers pay as well (1.6-1.9x at 1500 rows on AVX2, 2.4-3.1x native); a first
probe on a busy machine had measured 0.94x for the 384x384 ones and left them float32, the quiet run packs them.
fp16 weights measured slower than int8 everywhere (1.0-1.2x fp32 at encoder sizes, 1.3-4.4x at decode sizes)
and are kept as an explicit kind, not planned.

With int8, Whisper's projections of one input (q, k, v; cross-attention's k, v) are one product
(models.fused_projections: the same numbers, one call's fixed cost in a decode step instead of three).

Packing also switches the model's attention to models.row_attention: int8 turns the last-bit differences
of torch's batched CPU attention into visible ones, so with int8 every row attends on its own.
"""

from __future__ import annotations

from torch import nn

from models.fused_projections import fuse_projections
from models.quantized import LinearPlan, quantize_linears
from models.row_attention import use_row_attention

WHISPER = LinearPlan("whisper", (
    (r"\.encoder_attn\.[kv]_proj$", 0),  # over the encoder's 1500 frames, once per segment
    (r"^model\.encoder\.", 0),  # 1500 frames per clip, 384 (tiny) or 512 (base) wide
    (r"^model\.decoder\.|^proj_out$", 0),  # one row per running segment and step
))
# Projections of one input packed as one product (models.fused_projections): an attention's query, key and
# value; a cross-attention's key and value (its query reads the decoder, not the encoder).
WHISPER_FUSED = ((r"\.self_attn$", ("q_proj", "k_proj", "v_proj")), (r"\.encoder_attn$", ("k_proj", "v_proj")))
QWEN3_ASR = LinearPlan("qwen3_asr", (
    (r"", 0),  # audio tower (1024 wide at 1.7B), projector, LLM (2048 / 6144) and LM head: all pay
))


def pack_linears(model: nn.Module, plan: LinearPlan, kind: str,
                 fused: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> str:
    """Pack the plan's layers of `model` in place; a one-line summary for the log ("int8: 186 Linear layers
    (plan whisper), 12 left float32"). With int8, the `fused` groups of projections become one product each."""
    total = sum(type(m) is nn.Linear for m in model.modules())
    joined = fuse_projections(model, fused, plan.packs) if kind == "int8" else 0
    counts = quantize_linears(model, plan.chooser(kind))
    packed = sum(counts.values()) + joined
    summary = f"{kind}: {packed} Linear layers (plan {plan.name}), {total - packed} left float32"
    return summary + (f", {joined} of them fused by shared input" if joined else "")


def pack_whisper(model: nn.Module, kind: str) -> str:
    """Whisper's planned layers packed; attention row by row (encoder and decoder share one config), so the
    float parts between packed layers give a row the same numbers alone and batched (models.row_attention)."""
    use_row_attention(model.config)
    return pack_linears(model, WHISPER, kind, WHISPER_FUSED) + "; attention row by row"


def pack_qwen3_asr(model: nn.Module, kind: str) -> str:
    """Qwen3-ASR's planned layers packed; the LLM attends row by row (the audio encoder already attends one
    window of one row at a time)."""
    use_row_attention(model.config.text_config)
    return pack_linears(model, QWEN3_ASR, kind) + "; LLM attention row by row"
