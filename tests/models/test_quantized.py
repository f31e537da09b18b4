"""Packed int8 / fp16 Linear layers (models/quantized.py): accuracy against float32, batch invariance of the
per-row int8 scheme (and that FBGEMM's own per-tensor scheme lacks it, so the check can fail), packing a
model by plan, and the LoRA hooks on packed layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.linear_plans import QWEN3_ASR, WHISPER, pack_linears
from models.lora import GatedLoRAHook, LoRAPair, RowGate, check_pair_fits, gated_rows
from models.quantized import LinearPlan, PackedLinear, kernels_missing, linear_shape, quantize_linears

pytestmark = pytest.mark.skipif(kernels_missing() is not None, reason=f"no FBGEMM kernels: {kernels_missing()}")


def _linear(in_features: int = 96, out_features: int = 80, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("kind, tolerance", [("int8", 0.03), ("int8-tensor", 0.03), ("fp16", 1e-3)])
def test_packed_layers_stay_close_to_float32(kind, tolerance):
    linear = _linear()
    x = torch.randn(2, 5, 96)  # [B, T, in]: any leading shape
    packed = PackedLinear.from_linear(linear, kind)
    got = packed(x)
    assert got.shape == (2, 5, 80) and got.dtype == torch.float32
    assert _relative_error(got, linear(x).detach()) < tolerance


def test_row_int8_keeps_quiet_rows_precise_beside_loud_ones():
    """Each row has its own activation scale: a row 10^4 times quieter than its neighbour keeps its relative
    precision (with one scale per tensor it would quantise to nothing)."""
    linear = _linear()
    x = torch.randn(7, 96) * torch.logspace(-2, 2, 7)[:, None]  # rows of very different magnitudes
    want = linear(x).detach() - linear.bias.detach()
    for kind, worst in (("int8", 0.03), ("int8-tensor", 0.5)):
        got = PackedLinear.from_linear(linear, kind)(x) - linear.bias.detach()
        row_errors = (got - want).norm(dim=1) / want.norm(dim=1)
        assert (row_errors.max() < worst) if kind == "int8" else (row_errors.max() > worst)


def test_row_int8_is_exactly_batch_invariant():
    packed = PackedLinear.from_linear(_linear(), "int8")
    torch.manual_seed(1)
    rows = torch.randn(40, 96) * torch.logspace(-3, 3, 40)[:, None]
    together = packed(rows)
    for index in (0, 1, 17, 39):
        assert torch.equal(packed(rows[index:index + 1]), together[index:index + 1])
        neighbours = torch.cat([rows[index:index + 1] * 0, rows[index:index + 1], rows[:3] * 1e4])
        assert torch.equal(packed(neighbours)[1], together[index])


def test_row_int8_with_fixed_parameters_equals_fbgemms_dynamic_choice_for_an_anchored_batch():
    """The fixed activation scale and zero point are those FBGEMM's dynamic quantisation picks for rows
    spanning [-1, 1]: the same numbers, bit for bit, as `linear_dynamic` on the scaled rows plus an anchor
    row [-1, 1, 0, ...] (the scheme before), for rows whose extreme is +1 or -1 and for all-zero rows."""
    linear = _linear(bias=False)
    packed = PackedLinear.from_linear(linear, "int8")
    torch.manual_seed(2)
    rows = torch.randn(30, 96) * torch.logspace(-3, 3, 30)[:, None]
    rows[3, 5], rows[4, 6], rows[5] = 1e4, -1e4, 0.0  # a positive extreme, a negative one, a zero row
    scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    anchor = torch.zeros(1, 96)
    anchor[0, 0], anchor[0, 1] = -1.0, 1.0
    dynamic = torch.ops.quantized.linear_dynamic(torch.cat([rows / scale, anchor]), packed.packed, True)[:30]
    assert torch.equal(packed(rows), dynamic * scale)


def test_fbgemms_per_tensor_scheme_is_not_batch_invariant():
    """Why the service does not use FBGEMM's own dynamic quantisation: a loud neighbour changes a row."""
    packed = PackedLinear.from_linear(_linear(), "int8-tensor")
    row = torch.randn(1, 96)
    alone = packed(row)
    beside_a_loud_row = packed(torch.cat([row, row * 1000]))[:1]
    assert not torch.equal(alone, beside_a_loud_row)


def test_zero_rows_give_the_bias_and_wrong_dtypes_are_refused():
    linear = _linear()
    packed = PackedLinear.from_linear(linear, "int8")
    assert torch.allclose(packed(torch.zeros(3, 96)), linear.bias.detach().expand(3, -1))
    with pytest.raises(TypeError, match="float32"):
        packed(torch.zeros(1, 96, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="unknown packed linear kind"):
        PackedLinear.from_linear(linear, "int4")


def test_linear_shape_knows_float_packed_and_torchs_dynamic_linears():
    linear = _linear(bias=False)
    dynamic = torch.ao.quantization.quantize_dynamic(nn.Sequential(_linear()), {nn.Linear}, dtype=torch.qint8)[0]
    assert linear_shape(linear) == (80, 96)
    assert linear_shape(PackedLinear.from_linear(linear, "fp16")) == (80, 96)
    assert linear_shape(dynamic) == (80, 96)
    assert linear_shape(nn.Conv1d(4, 4, 3)) is None


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(600, 600), nn.Linear(600, 300))
        self.decoder = nn.Sequential(nn.Linear(300, 300), nn.ReLU())
        self.head = nn.Linear(300, 10)


def test_a_plan_packs_the_layers_it_names_and_leaves_the_rest():
    model = _Model()
    plan = LinearPlan("test", ((r"^encoder\.", 512), (r"^decoder\.", 0), (r"^head$", None)))
    counts = quantize_linears(model, plan.chooser("int8"))
    assert counts == {"int8": 2}
    assert isinstance(model.encoder[0], PackedLinear) and isinstance(model.decoder[0], PackedLinear)
    assert type(model.encoder[1]) is nn.Linear  # 300 < 512: too small to pay at encoder sizes
    assert type(model.head) is nn.Linear  # named, but never packed
    hidden = model.decoder(model.encoder(torch.randn(2, 600)))
    assert model.head(hidden).shape == (2, 10)


def test_layers_with_hooks_are_refused():
    model = _Model()
    model.encoder[0].register_forward_hook(lambda *_: None)
    with pytest.raises(RuntimeError, match="before attaching adapters"):
        quantize_linears(model, lambda name, module: "int8")


def test_the_recognizer_plans_name_their_parts():
    whisper_tiny = nn.Linear(384, 384)
    assert WHISPER.packs("model.encoder.layers.0.self_attn.q_proj", whisper_tiny)  # tiny's 384-wide layers pay
    assert WHISPER.packs("model.encoder.layers.0.fc1", nn.Linear(384, 1536))
    assert WHISPER.packs("model.encoder.layers.0.fc1", nn.Linear(512, 2048))
    assert WHISPER.packs("model.decoder.layers.0.encoder_attn.k_proj", whisper_tiny)
    assert not WHISPER.packs("router.head", whisper_tiny)  # no rule names it: stays float
    assert WHISPER.packs("model.decoder.layers.0.encoder_attn.q_proj", whisper_tiny)
    assert WHISPER.packs("proj_out", nn.Linear(384, 51864))
    assert QWEN3_ASR.packs("model.audio_tower.layers.0.fc1", nn.Linear(8, 8))
    model = _Model()
    assert pack_linears(model, QWEN3_ASR, "int8") == "int8: 4 Linear layers (plan qwen3_asr), 0 left float32"


def test_gated_lora_on_a_packed_layer_changes_only_the_robust_rows():
    linear = _linear()
    packed = PackedLinear.from_linear(linear, "int8")
    pair = LoRAPair(A=torch.randn(4, 96) * 0.1, B=torch.randn(80, 4) * 0.1)
    check_pair_fits("layer", packed, pair)
    with pytest.raises(ValueError, match="do not fit"):
        check_pair_fits("layer", packed, LoRAPair(A=torch.randn(4, 95), B=torch.randn(80, 4)))
    x = torch.randn(3, 96)
    plain = packed(x)
    gate = RowGate()
    packed.register_forward_hook(GatedLoRAHook(pair, gate, "text"))
    with gated_rows(gate, [False, True, False]):
        gated = packed(x)
    assert torch.equal(gated[0], plain[0]) and torch.equal(gated[2], plain[2])
    assert torch.allclose(gated[1], plain[1] + pair.apply(x[1]), atol=1e-5)
