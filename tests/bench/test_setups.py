"""The benchmark's parameter count (bench/setups.py): a model counts the same float and packed int8, fused
projections included (their zero-filled bias is no parameter of the model)."""

from __future__ import annotations

import pytest

from bench.setups import count_parameters
from models.linear_plans import pack_whisper
from models.quantized import kernels_missing
from tests.models.whisper import tiny_random_whisper


@pytest.mark.skipif(kernels_missing() is not None, reason=f"no FBGEMM kernels: {kernels_missing()}")
def test_a_packed_whisper_counts_as_many_parameters_as_the_float_one():
    packed = tiny_random_whisper()
    summary = pack_whisper(packed, "int8")
    assert "fused by shared input" in summary
    assert count_parameters(packed) == count_parameters(tiny_random_whisper())
