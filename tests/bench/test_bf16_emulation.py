"""The bf16 emulation computes what torch's real bf16 kernels compute: matrix ops exactly (convolutions up
to summation order), everything else untouched."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.bf16_emulation import Bf16MatmulOnFp32


def bf16(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(torch.bfloat16)


def test_matrix_ops_equal_real_bf16_and_are_rerouted():
    x, w, b = bf16(5, 64), bf16(48, 64), bf16(48)
    a, m = bf16(3, 7, 32), bf16(3, 32, 9)
    ops = [lambda: F.linear(x, w, b), lambda: x @ w.T, lambda: torch.bmm(a, m), lambda: torch.addmm(b, x, w.T)]
    real = [op() for op in ops]
    with Bf16MatmulOnFp32() as mode:
        emulated = [op() for op in ops]
    assert mode.rerouted == len(ops)
    assert all(e.dtype == torch.bfloat16 and torch.equal(e, r) for e, r in zip(emulated, real))


def test_convolution_and_attention_match_up_to_summation_order():
    conv = torch.nn.Conv2d(4, 16, 3, stride=2, padding=1).to(torch.bfloat16)
    x = bf16(2, 4, 32, 20)
    q, k, v = bf16(1, 2, 9, 8), bf16(1, 2, 11, 8), bf16(1, 2, 11, 8)
    with torch.inference_mode():
        real = conv(x), F.scaled_dot_product_attention(q, k, v)
        with Bf16MatmulOnFp32() as mode:
            emulated = conv(x), F.scaled_dot_product_attention(q, k, v)
    assert mode.rerouted == 2
    (conv_e, attention_e), (conv_r, attention_r) = emulated, real
    one_step = conv_r.float().abs() * 2 ** -7  # one bf16 step (8 significant bits) at each value
    assert ((conv_e.float() - conv_r.float()).abs() <= one_step).all() and (conv_e != conv_r).float().mean() < 0.01
    # torch's fused bf16 attention rounds the probabilities to bf16 before P.V; the emulation does not
    scale = attention_r.float().abs().max()
    assert ((attention_e.float() - attention_r.float()).abs() <= scale * 2 ** -6).all()


def test_other_ops_and_fp32_run_untouched():
    x = bf16(4, 8)
    with Bf16MatmulOnFp32() as mode:
        assert torch.equal(torch.softmax(x, -1), torch.softmax(bf16(4, 8), -1))
        fp32 = torch.randn(4, 8) @ torch.randn(8, 3)
    assert mode.rerouted == 0 and fp32.dtype == torch.float32
