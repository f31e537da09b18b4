"""Engine details that the batcher tests do not see directly: how joining segments form prefill groups."""

from __future__ import annotations

from types import SimpleNamespace

from app.engine.iteration import Engine


def entries(*durations: float) -> list:
    return [(key, SimpleNamespace(item=SimpleNamespace(duration=d))) for key, d in enumerate(durations)]


def keys(groups: list) -> list[list[int]]:
    return [[key for key, _ in group] for group in groups]


def test_prefill_groups_hold_similar_durations_in_admission_order():
    engine = Engine(pipeline=None, session=None, length_ratio=2.0)  # type: ignore[arg-type]
    # sorted: 1.5, 2, 3 (<= 2 x 1.5) | 9 | 20, 25 (<= 2 x 20)
    assert keys(engine._groups(entries(20.0, 2.0, 25.0, 3.0, 1.5, 9.0))) == [[1, 3, 4], [5], [0, 2]]
    # sub-second clips count as 1 s, so they never split apart from each other
    assert keys(engine._groups(entries(0.2, 0.9, 2.0))) == [[0, 1, 2]]


def test_static_mode_prefills_everything_admitted_together():
    engine = Engine(pipeline=None, session=None, group_by_length=False)  # type: ignore[arg-type]
    assert keys(engine._groups(entries(20.0, 2.0, 25.0))) == [[0, 1, 2]]
    assert engine._groups([]) == []
