"""Run a real bf16 model on a CPU without bf16 matrix hardware at about fp32 speed: for quality checks, never
for serving.

On such a CPU torch's bf16 GEMM falls back to a reference path (~450x slower than fp32 on the AVX2
development machine), while bf16 elementwise ops, norms and softmax run at normal speed. So the model is
cast to bf16 for real and only the matrix ops are computed differently: under `Bf16MatmulOnFp32()` every
linear / matmul / convolution / attention op whose operands are bf16 runs on fp32 copies of them and its
result is rounded back to bf16. A product of two bf16 numbers is exact in fp32, so this equals what bf16
hardware computes (bf16 operands, fp32 accumulation, bf16 result: AMX, AVX512_BF16, CUDA tensor cores) up
to the order of the summation. Every other op is torch's own bf16 kernel, the model's explicit fp32 upcasts
stay fp32. One difference remains: fused bf16 attention kernels round the softmax probabilities to bf16
before multiplying by V; here attention runs in fp32 inside and rounds only its output.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

_aten = torch.ops.aten
MATRIX_OPS = frozenset({
    _aten.linear.default, _aten.matmul.default, _aten.mm.default, _aten.bmm.default, _aten.addmm.default,
    _aten.baddbmm.default, _aten.addbmm.default, _aten.addmv.default, _aten.mv.default, _aten.dot.default,
    _aten.einsum.default, _aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default,
    _aten.convolution.default, _aten.conv_transpose1d.default, _aten.conv_transpose2d.input,
    _aten.scaled_dot_product_attention.default, _aten._scaled_dot_product_flash_attention_for_cpu.default,
})


def _has_bf16(value: object) -> bool:
    found = []
    tree_map(lambda v: found.append(isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16), value)
    return any(found)


def _up(value: object) -> object:
    return value.float() if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 else value


def _down(value: object) -> object:
    return value.to(torch.bfloat16) if isinstance(value, torch.Tensor) and value.dtype == torch.float32 else value


class Bf16MatmulOnFp32(TorchDispatchMode):
    """Within the context, bf16 matrix ops run as fp32 kernels on their (exact) bf16 operands and round their
    results to bf16; everything else runs as is. Count of rerouted ops in `rerouted`."""

    def __init__(self) -> None:
        super().__init__()
        self.rerouted = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in MATRIX_OPS or not _has_bf16((args, kwargs)):
            return func(*args, **kwargs)
        self.rerouted += 1
        return tree_map(_down, func(*tree_map(_up, args), **tree_map(_up, kwargs)))
