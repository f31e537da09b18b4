"""What an evaluation produces: each item scored on both paths, and the whole result (sweep, baselines,
recommendation). Shared by the command that computes it and the report that writes it out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.evaluation.calibrate import Baselines, ItemOutcome, Recommendation, SweepPoint
from app.evaluation.runners import ItemTranscripts
from app.evaluation.scoring import ErrorCount


@dataclass(frozen=True)
class ScoredItem:
    transcripts: ItemTranscripts
    language: str | None  # the language the texts were normalised for
    base: ErrorCount  # robust's count when the base path cannot do the language (see ItemOutcome)
    robust: ErrorCount

    @property
    def outcome(self) -> ItemOutcome:
        return ItemOutcome(router_score=self.transcripts.router_score, duration=self.transcripts.duration,
                           base=self.base, robust=self.robust, forced_robust=self.transcripts.base is None)


@dataclass(frozen=True)
class EvaluationResult:
    manifest: Path
    source: str  # what was evaluated: "in-process, profile demo" or the service URL
    items: list[ScoredItem]
    sweep: list[SweepPoint]
    baselines: Baselines
    recommendation: Recommendation
    configured_threshold: float
    wall_seconds: float
