"""The outputs of an evaluation: report.json (every item, the sweep, the recommendation), a plot of error
against threshold, and a short summary for the terminal."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from app.evaluation.calibrate import Totals, point_at
from app.evaluation.results import EvaluationResult, ScoredItem
from app.evaluation.scoring import CER_LANGUAGES

METRIC = (f"error rate = (substitutions + deletions + insertions) / reference units; units are words after "
          f"Whisper's normalisers, or characters for {'/'.join(sorted(CER_LANGUAGES))} (Chinese in Simplified); "
          "corpus figures pool all items (total errors / total reference units)")
_FEW_ITEMS = 50


def report_dict(result: EvaluationResult) -> dict:
    rec = result.recommendation
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "manifest": str(result.manifest),
        "evaluated": result.source,
        "metric": METRIC,
        "routing_rule": "robust when router_score >= threshold; a file's router_score is its highest "
                        "segment score (the service routes each ≤ 30 s segment on its own score)",
        "wall_seconds": round(result.wall_seconds, 2),
        "totals": {"items": len(result.items), "audio_seconds": round(_audio_seconds(result), 3),
                   "base_only": _totals(result.baselines.base), "robust_only": _totals(result.baselines.robust),
                   "oracle": _totals(result.baselines.oracle),
                   "configured_threshold": {"threshold": result.configured_threshold,
                                            **_totals(point_at(result.sweep, result.configured_threshold))}},
        "recommendation": {"routing": rec.routing, "threshold": rec.best.threshold,
                           "setting": rec.best.setting,  # same split as `threshold`, fewer decimals
                           "same_split_for": {"above": _finite(rec.best.lower), "up_to": _finite(rec.best.upper)},
                           "best_single_path": rec.best_single, "gain_errors": rec.gain_errors,
                           "verdict": rec.verdict, **_totals(rec.best)},
        "sweep": [{"threshold": p.threshold, **_totals(p)} for p in result.sweep],
        "items": [_item_row(item) for item in result.items],
    }


def _totals(totals: Totals) -> dict:
    row = asdict(totals)
    for key in ("threshold", "lower", "upper"):
        row.pop(key, None)
    row["robust_seconds"] = round(row["robust_seconds"], 3)
    row["rate"] = None if math.isinf(totals.rate) else round(totals.rate, 6)
    return row


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 6)


def _item_row(scored: ScoredItem) -> dict:
    t = scored.transcripts
    return {
        "path": str(t.item.path), "line": t.item.line, "language": scored.language,
        "duration": round(t.duration, 3),
        "router_score": None if t.router_score is None else round(t.router_score, 6),
        "reference": t.item.reference, "unit": scored.robust.unit, "reference_units": scored.robust.units,
        "base": None if t.base is None else {"text": t.base.text, "errors": scored.base.errors},
        "robust": None if t.robust is None else {"text": t.robust.text, "errors": scored.robust.errors},
        "forced_robust": t.base is None,  # the base path cannot do this language: robust at any threshold
    }


def write_report(result: EvaluationResult, path: Path) -> None:
    path.write_text(json.dumps(report_dict(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_plot(result: EvaluationResult, path: Path) -> None:
    """Routed error vs threshold, with the single-path and oracle lines and the recommended threshold."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        _draw(ax, result)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _draw(ax, result: EvaluationResult) -> None:
    x = [p.threshold for p in result.sweep]
    ax.step(x, [_percent(p) for p in result.sweep], where="pre", color="tab:blue", label="routed")
    base = result.baselines
    for label, totals, color in (("base only", base.base, "tab:orange"), ("robust only", base.robust, "tab:red"),
                                 ("oracle", base.oracle, "tab:green")):
        ax.axhline(_percent(totals), color=color, linestyle="--", linewidth=1,
                   label=f"{label} {_percent(totals):.2f} %")
    best = result.recommendation.best
    ax.axvline(best.threshold, color="black", linestyle=":", linewidth=1,
               label=f"best threshold {best.setting:g} ({result.recommendation.routing})")
    share = ax.twinx()  # how much audio each threshold sends to the robust path (its compute)
    total = base.robust.robust_seconds or 1.0
    share.step(x, [100 * p.robust_seconds / total for p in result.sweep], where="pre", color="grey",
               alpha=0.4, linewidth=1)
    share.set_ylabel("% of audio on the robust path", color="grey")
    share.set_ylim(0, 105)
    ax.set_xlabel("router threshold (robust when P(degraded) ≥ threshold)")
    ax.set_ylabel("corpus error rate (%)")
    ax.set_xlim(0, 1)
    ax.set_title(f"{len(result.items)} items from {result.manifest.name}")
    ax.legend(loc="best", fontsize=8)


def _percent(totals: Totals) -> float:
    return math.nan if math.isinf(totals.rate) else 100 * totals.rate


def summary(result: EvaluationResult, out_dir: Path | None = None) -> str:
    """A few lines for the terminal: the baselines, the configured and best thresholds, the verdict."""
    b = result.baselines
    configured = point_at(result.sweep, result.configured_threshold)
    best = result.recommendation.best
    lines = [
        (f"Evaluated {len(result.items)} items ({_audio_seconds(result) / 60:.1f} min of audio, "
         f"{_units(result)}) on both paths of {result.source} in {result.wall_seconds:.0f} s."),
        _line("base only", b.base),
        _line("robust only", b.robust),
        _line("oracle", b.oracle, "the better path for each item"),
        _line(f"routed @ {configured.threshold:g}", configured, "configured threshold"),
        _line(f"routed @ {best.setting:g}", best, "best threshold"),
    ]
    if len(result.items) < _FEW_ITEMS:
        lines.append(f"Only {len(result.items)} items: a difference of an error or two is noise; evaluate on "
                     "more of your recordings before changing the deployment.")
    lines.append(f"Recommendation: {result.recommendation.verdict}")
    if out_dir is not None:
        lines.append(f"Wrote {out_dir / 'report.json'} and {out_dir / 'error_vs_threshold.png'}")
    return "\n".join(lines)


def _line(label: str, totals: Totals, note: str = "") -> str:
    rate = "n/a" if math.isinf(totals.rate) else f"{100 * totals.rate:6.2f} %"
    text = f"  {label:<15} {rate}  ({totals.errors} errors, {totals.robust_items} items robust"
    return text + (f"; {note})" if note else ")")


def _units(result: EvaluationResult) -> str:
    words = sum(s.robust.units for s in result.items if s.robust.unit == "word")
    chars = sum(s.robust.units for s in result.items if s.robust.unit == "char")
    parts = ([f"{words} reference words"] if words else []) + ([f"{chars} reference characters"] if chars else [])
    return " + ".join(parts) or "no reference words"


def _audio_seconds(result: EvaluationResult) -> float:
    return sum(s.transcripts.duration for s in result.items)
