"""Comparing recognitions across batch compositions: everything equal, the decoder's own float statistics
(avg_logprob, no_speech_prob) equal up to float rounding (a row's neighbours change the kernels' blocking)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from models.recognition import Recognition

_FLOAT_FIELDS = ("avg_logprob", "no_speech_prob")


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4,
                                                                                            abs_tol=1e-5))


def same_recognition(a: Recognition, b: Recognition) -> bool:
    exact = {f: getattr(a, f) for f in (field.name for field in dataclasses.fields(a)) if f not in _FLOAT_FIELDS}
    other = {f: getattr(b, f) for f in exact}
    return exact == other and all(_close(getattr(a, f), getattr(b, f)) for f in _FLOAT_FIELDS)


def assert_same_recognitions(got: Sequence[Recognition], expected: Sequence[Recognition]) -> None:
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert same_recognition(a, b), f"row {index}: {a} != {b}"
