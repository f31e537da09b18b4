"""Threshold calibration: the routed corpus error at every threshold, and the recommendation.

The service sends an item to the robust path when P(degraded) >= threshold. For each candidate
threshold (0..1 in steps of 0.01 plus every distinct router score, so every possible split is tried) the
routed error is the base errors of items below it plus the robust errors of items at or above it. The
recommendation is the lowest corpus error; ties go to the least robust-path compute (audio seconds, then
items, routed robust), then to the highest threshold. Routing is only recommended when it beats the base
path alone; when the best split routes everything robust, always_robust is recommended (no router cost).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.evaluation.scoring import ErrorCount

Routing = Literal["router", "always_base", "always_robust"]
GRID_STEP = 0.01
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ItemOutcome:
    """One item's errors on each path. For an item the base path cannot transcribe (its language),
    `base` is the robust count and `forced_robust` is set: the service sends it robust at any threshold."""

    router_score: float | None  # None: nothing voiced, no route taken
    duration: float  # seconds
    base: ErrorCount
    robust: ErrorCount
    forced_robust: bool = False

    def __post_init__(self) -> None:
        if self.base.units != self.robust.units:
            raise ValueError("base and robust counts must be against the same reference")


@dataclass(frozen=True)
class Totals:
    """Corpus errors of one routing choice and the robust-path compute it costs."""

    errors: int
    units: int  # reference words/characters
    robust_items: int
    robust_seconds: float

    @property
    def rate(self) -> float:
        if self.units == 0:
            return 0.0 if self.errors == 0 else math.inf
        return self.errors / self.units


@dataclass(frozen=True)
class SweepPoint(Totals):
    threshold: float = 0.0
    # Every threshold in (lower, upper] routes exactly these items: the neighbouring router scores.
    lower: float = -math.inf
    upper: float = math.inf

    @property
    def setting(self) -> float:
        """The value to configure: the highest threshold with the fewest decimals that gives the same
        split, so 0.79 rather than a raw score such as 0.79998 (which printed as 0.80 would split
        differently)."""
        upper = min(self.upper, 1.0)
        for decimals in (2, 3, 4, 6):
            scale = 10 ** decimals
            value = round(upper, decimals)
            if value > upper:  # rounded up: take the step below
                value = round(value - 1 / scale, decimals)
            if value > self.lower and value >= 0.0:
                return value
        return upper


@dataclass(frozen=True)
class Baselines:
    base: Totals  # routing=always_base (items only the robust path can do still go robust)
    robust: Totals  # routing=always_robust
    oracle: Totals  # the better path for each item: the most any router could get


@dataclass(frozen=True)
class Recommendation:
    routing: Routing
    best: SweepPoint  # the best threshold, whatever the routing recommended
    best_single: Literal["base", "robust"]
    gain_errors: int  # errors of the better single path minus errors at the best threshold
    verdict: str


def candidate_thresholds(scores: Sequence[float | None]) -> list[float]:
    grid = {round(i * GRID_STEP, 2) for i in range(round(1 / GRID_STEP) + 1)}
    return sorted(grid | {float(s) for s in scores if s is not None and 0.0 <= s <= 1.0})


def baselines(outcomes: Sequence[ItemOutcome]) -> Baselines:
    units = sum(o.robust.units for o in outcomes)
    forced = [o for o in outcomes if o.forced_robust]
    scored = [o for o in outcomes if o.router_score is not None]
    return Baselines(
        base=Totals(sum(o.base.errors for o in outcomes), units, len(forced), sum(o.duration for o in forced)),
        robust=Totals(sum(o.robust.errors for o in outcomes), units, len(scored),
                      sum(o.duration for o in scored)),
        oracle=_oracle(outcomes, units))


def _oracle(outcomes: Sequence[ItemOutcome], units: int) -> Totals:
    # Ties go to base: the oracle also pays the least robust compute.
    robust = [o for o in outcomes if o.forced_robust or o.robust.errors < o.base.errors]
    return Totals(sum(min(o.base.errors, o.robust.errors) for o in outcomes), units, len(robust),
                  sum(o.duration for o in robust))


def sweep(outcomes: Sequence[ItemOutcome], thresholds: Sequence[float] | None = None) -> list[SweepPoint]:
    """Routed totals at each threshold (sorted ascending)."""
    if not outcomes:
        raise ValueError("nothing to calibrate: no items")
    if thresholds is None:
        thresholds = candidate_thresholds([o.router_score for o in outcomes])
    # Effective score: forced items are always robust, items with no score never are.
    scores = np.array([math.inf if o.forced_robust else -math.inf if o.router_score is None
                       else o.router_score for o in outcomes], dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    extra = _suffix_sums(np.array([o.robust.errors - o.base.errors for o in outcomes])[order])
    seconds = _suffix_sums(np.array([o.duration for o in outcomes], dtype=np.float64)[order])
    base_errors = sum(o.base.errors for o in outcomes)
    units = sum(o.robust.units for o in outcomes)
    points = []
    for threshold in sorted(thresholds):
        first = int(np.searchsorted(sorted_scores, threshold, side="left"))  # items first.. are >= threshold
        points.append(SweepPoint(errors=int(base_errors + extra[first]), units=units,
                                 robust_items=len(outcomes) - first, robust_seconds=float(seconds[first]),
                                 threshold=float(threshold),
                                 lower=float(sorted_scores[first - 1]) if first > 0 else -math.inf,
                                 upper=float(sorted_scores[first]) if first < len(outcomes) else math.inf))
    return points


def _suffix_sums(values: np.ndarray) -> np.ndarray:
    """[sum(values[i:]) for i in 0..n], the last being 0."""
    return np.concatenate([np.cumsum(values[::-1])[::-1], np.zeros(1, dtype=values.dtype)])


def best_point(points: Sequence[SweepPoint]) -> SweepPoint:
    return min(points, key=lambda p: (p.errors, round(p.robust_seconds, 6), p.robust_items, -p.threshold))


def point_at(points: Sequence[SweepPoint], threshold: float) -> SweepPoint:
    return min(points, key=lambda p: abs(p.threshold - threshold))


def recommend(points: Sequence[SweepPoint], base: Baselines) -> Recommendation:
    best = best_point(points)
    single: Literal["base", "robust"] = "base" if base.base.errors <= base.robust.errors else "robust"
    single_errors = min(base.base.errors, base.robust.errors)
    gain = single_errors - best.errors
    if base.base.errors < best.errors:
        routing: Routing = "always_base"
        verdict = (f"The base path alone ({_pct(base.base.rate)}) is better than routing at every threshold "
                   f"(best {_pct(best.rate)} at threshold {best.setting:g}) and than the robust path alone "
                   f"({_pct(base.robust.rate)}): set MEGA_ASR_ROUTING=always_base.")
    elif base.base.errors == best.errors:
        routing = "always_base"
        verdict = (f"Routing does not beat the base path alone ({_pct(base.base.rate)} either way; robust "
                   f"alone {_pct(base.robust.rate)}): set MEGA_ASR_ROUTING=always_base.")
    elif best.robust_items == base.robust.robust_items and best.errors == base.robust.errors:
        routing = "always_robust"
        verdict = (f"The robust path alone is best ({_pct(base.robust.rate)} vs base {_pct(base.base.rate)}) "
                   "and no threshold saves robust compute at that accuracy: set MEGA_ASR_ROUTING=always_robust.")
    else:
        routing = "router"
        verdict = _router_verdict(best, base, single, gain)
    return Recommendation(routing=routing, best=best, best_single=single, gain_errors=gain, verdict=verdict)


def _router_verdict(best: SweepPoint, base: Baselines, single: str, gain: int) -> str:
    share = best.robust_seconds / base.robust.robust_seconds if base.robust.robust_seconds else 0.0
    head = (f"Use MEGA_ASR_THRESHOLD={best.setting:g}: {_pct(best.rate)} with {best.robust_items} items "
            f"({share:.0%} of the audio) on the robust path")
    single_totals = base.base if single == "base" else base.robust
    if gain > 0:
        relative = gain / single_totals.errors if single_totals.errors else 0.0
        return (f"{head}; routing beats the better single path ({single}, {_pct(single_totals.rate)}) by "
                f"{100 * (single_totals.rate - best.rate):.2f} percentage points ({relative:.0%} fewer errors).")
    return (f"{head}; routing matches the robust path's accuracy ({_pct(single_totals.rate)}) while "
            f"sending only {share:.0%} of the audio to it.")


def _pct(rate: float) -> str:
    return "n/a" if math.isinf(rate) else f"{100 * rate:.2f} %"
