from __future__ import annotations

import math

import numpy as np
import pytest

from app.evaluation.calibrate import (
    ItemOutcome,
    SweepPoint,
    baselines,
    best_point,
    candidate_thresholds,
    point_at,
    recommend,
    sweep,
)
from app.evaluation.scoring import ErrorCount


def outcome(score: float | None, base: int, robust: int, *, units: int = 10, seconds: float = 1.0,
            forced: bool = False) -> ItemOutcome:
    return ItemOutcome(router_score=score, duration=seconds, base=ErrorCount(base, units, "word"),
                       robust=ErrorCount(robust, units, "word"), forced_robust=forced)


def calibrate(outcomes: list[ItemOutcome]):
    points = sweep(outcomes)
    return points, recommend(points, baselines(outcomes))


def test_candidates_are_the_grid_plus_every_score():
    candidates = candidate_thresholds([0.123, None, 0.5, 0.999])
    assert candidates[0] == 0.0 and candidates[-1] == 1.0
    assert len(candidates) == 101 + 2  # 0.5 is on the grid already
    assert 0.123 in candidates and 0.999 in candidates and 0.37 in candidates
    assert candidates == sorted(candidates)


def test_a_score_equal_to_the_threshold_goes_robust():
    points = sweep([outcome(0.4, base=5, robust=0)], [0.39, 0.4, 0.41])
    assert [(p.threshold, p.errors, p.robust_items) for p in points] == [(0.39, 0, 1), (0.4, 0, 1), (0.41, 5, 0)]


def test_routing_helps_and_the_known_threshold_is_found():
    outcomes = [outcome(0.1, 0, 1), outcome(0.2, 0, 0), outcome(0.7, 3, 1), outcome(0.9, 4, 0)]
    points, rec = calibrate(outcomes)
    base = baselines(outcomes)
    assert (base.base.errors, base.robust.errors, base.oracle.errors) == (7, 2, 1)
    # any threshold in (0.2, 0.7] makes 1 error with the two degraded items robust; ties -> highest
    assert rec.routing == "router"
    assert rec.best.threshold == 0.7 and rec.best.errors == 1 and rec.best.robust_items == 2
    assert rec.best_single == "robust" and rec.gain_errors == 1
    assert "MEGA_ASR_THRESHOLD=0.7:" in rec.verdict and "beats the better single path (robust" in rec.verdict
    assert "by 2.50 percentage points (50% fewer errors)" in rec.verdict  # 2/40 -> 1/40
    assert point_at(points, 0.5).errors == 1 and point_at(points, 0.05).errors == 2


def test_base_better_everywhere_recommends_always_base():
    # the robust path hurts every item, and one item scores 1.0, so no threshold keeps everything on base
    outcomes = [outcome(0.3, 1, 2), outcome(0.6, 0, 1), outcome(1.0, 2, 3)]
    points, rec = calibrate(outcomes)
    assert rec.routing == "always_base"
    assert min(p.errors for p in points) == 4 > baselines(outcomes).base.errors == 3
    assert rec.best.errors == 4 and rec.best.threshold == 1.0
    assert rec.verdict.startswith("The base path alone (10.00 %) is better than routing at every threshold")
    assert "MEGA_ASR_ROUTING=always_base" in rec.verdict
    assert rec.gain_errors == -1


def test_routing_that_only_equals_base_recommends_always_base():
    outcomes = [outcome(0.3, 1, 2), outcome(0.6, 0, 1)]
    _, rec = calibrate(outcomes)
    assert rec.routing == "always_base" and rec.best.robust_items == 0 and rec.best.threshold == 1.0
    assert rec.verdict.startswith("Routing does not beat the base path alone")


def test_ties_go_to_the_least_robust_compute():
    # B scores lowest and is equally good on both paths: sending it robust buys nothing
    b, a, c = outcome(0.1, 1, 1, seconds=5.0), outcome(0.3, 2, 0), outcome(0.8, 1, 0)
    points, rec = calibrate([a, b, c])
    assert point_at(points, 0.05).errors == point_at(points, 0.3).errors == 1
    assert rec.routing == "router" and rec.best.threshold == 0.3
    assert rec.best.robust_items == 2 and rec.best.robust_seconds == 2.0
    assert rec.gain_errors == 0 and "matches the robust path's accuracy" in rec.verdict
    assert "only 29% of the audio" in rec.verdict  # 2 s of 7 s


def test_robust_everywhere_recommends_always_robust():
    _, rec = calibrate([outcome(0.2, 2, 0), outcome(0.5, 3, 0)])
    assert rec.routing == "always_robust" and rec.best.threshold == 0.2
    assert "MEGA_ASR_ROUTING=always_robust" in rec.verdict


def test_forced_and_unscored_items():
    forced = outcome(0.1, 2, 2, forced=True, seconds=3.0)  # base cannot do its language
    silent = outcome(None, 0, 0, seconds=4.0)  # nothing voiced: never routed
    points = sweep([forced, silent, outcome(0.5, 1, 0)], [0.0, 0.6])
    assert [(p.errors, p.robust_items, p.robust_seconds) for p in points] == [(2, 2, 4.0), (3, 1, 3.0)]
    base = baselines([forced, silent])
    assert base.base.robust_items == 1 and base.oracle.robust_items == 1 and base.robust.robust_items == 1


def test_sweep_matches_a_direct_computation_on_random_outcomes():
    rng = np.random.default_rng(7)
    outcomes = [outcome(None if rng.random() < 0.1 else float(np.round(rng.random(), 2)),
                        int(rng.integers(0, 5)), int(rng.integers(0, 5)), seconds=float(rng.uniform(1, 30)),
                        forced=bool(rng.random() < 0.1)) for _ in range(200)]
    for point in sweep(outcomes):
        robust = [o.forced_robust or (o.router_score is not None and o.router_score >= point.threshold)
                  for o in outcomes]
        assert point.errors == sum(o.robust.errors if r else o.base.errors for o, r in zip(outcomes, robust))
        assert point.robust_items == sum(robust)
        assert point.robust_seconds == pytest.approx(sum(o.duration for o, r in zip(outcomes, robust) if r))
        assert point.units == 2000


def test_best_point_order():
    points = sweep([outcome(0.5, 1, 0)], [0.2, 0.5, 0.9])
    assert best_point(points).threshold == 0.5  # 0 errors at 0.2 and 0.5: highest wins


def test_mismatched_references_are_refused():
    with pytest.raises(ValueError):
        ItemOutcome(0.5, 1.0, ErrorCount(0, 3, "word"), ErrorCount(0, 4, "word"))
    with pytest.raises(ValueError):
        sweep([])


@pytest.mark.parametrize(("lower", "upper", "setting"), [
    (0.2, 0.79998, 0.79), (0.791, 0.79998, 0.799), (0.7999, 0.79998, 0.79998), (0.1, 0.29, 0.29),
    (-math.inf, 0.004, 0.0), (0.95, math.inf, 1.0), (0.5, 1.0, 1.0)])
def test_the_setting_is_a_short_number_giving_the_same_split(lower, upper, setting):
    point = SweepPoint(errors=0, units=1, robust_items=0, robust_seconds=0.0, threshold=upper, lower=lower,
                       upper=upper)
    assert point.setting == setting
    assert lower < point.setting <= upper


def test_sweep_points_know_the_interval_of_their_split():
    points = sweep([outcome(0.3, 1, 0), outcome(0.8, 1, 0), outcome(None, 0, 0)], [0.0, 0.5, 0.9])
    assert [(p.lower, p.upper) for p in points] == [(-math.inf, 0.3), (0.3, 0.8), (0.8, math.inf)]
    assert [p.setting for p in points] == [0.3, 0.8, 1.0]
