"""`mega-asr-server evaluate`: manifest -> both paths -> scores -> sweep -> report.json, plot, summary.

In-process (default) the pipeline of the configured profile is loaded from MEGA_ASR_* settings, exactly as
`serve` would, except that routing is forced to `router` (evaluation needs both paths and the router,
whatever routing the deployment uses). With `--url`, a running service is evaluated instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.evaluation.calibrate import (
    baselines,
    recommend,
    sweep,
)
from app.evaluation.manifest import ManifestError, ManifestItem, read_manifest
from app.evaluation.results import EvaluationResult, ScoredItem
from app.evaluation.runners import EvaluationError, InProcessConfig, InProcessRunner, ItemTranscripts, Runner
from app.evaluation.scoring import count_errors

if TYPE_CHECKING:
    from app.engine.pipeline import Pipeline
    from app.settings import Settings

DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class EvaluateOptions:
    manifest: Path
    out_dir: Path
    url: str | None = None  # evaluate a running service instead of loading the models here
    api_key: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE  # in-process: segments per batch; HTTP: items in flight
    language: str | None = None  # for items whose manifest line gives none
    progress: bool = True


def score_item(transcripts: ItemTranscripts) -> ScoredItem:
    """Errors of both paths, normalised for the item's language (else the language the robust path
    detected, else the base path's)."""
    paths = [p for p in (transcripts.robust, transcripts.base) if p is not None]
    language = transcripts.item.language or next((p.language for p in paths if p.language), None)
    reference = transcripts.item.reference
    counts = {name: count_errors(reference, path.text, language)
              for name, path in (("base", transcripts.base), ("robust", transcripts.robust)) if path is not None}
    return ScoredItem(transcripts=transcripts, language=language,
                      base=counts.get("base", counts.get("robust")),  # type: ignore[arg-type]
                      robust=counts.get("robust", counts.get("base")))  # type: ignore[arg-type]


def evaluate(manifest: Path, items: Sequence[ManifestItem], runner: Runner, *, source: str,
             configured_threshold: float = 0.5) -> EvaluationResult:
    """Transcribe, score and calibrate `items` (read from `manifest`)."""
    started = time.perf_counter()
    scored = [score_item(t) for t in runner.transcribe(items)]
    outcomes = [s.outcome for s in scored]
    points = sweep(outcomes)
    base = baselines(outcomes)
    return EvaluationResult(manifest=manifest, source=source, items=scored, sweep=points, baselines=base,
                            recommendation=recommend(points, base), configured_threshold=configured_threshold,
                            wall_seconds=time.perf_counter() - started)


def build_runner(options: EvaluateOptions, settings: Settings,
                 pipeline: Pipeline | None = None) -> tuple[Runner, str]:
    """The runner for `options` and a description of what it evaluates. `pipeline` skips loading."""
    if options.url:
        from app.evaluation.http_runner import HttpConfig, HttpRunner

        config = HttpConfig(concurrency=options.batch_size, progress=options.progress)
        return HttpRunner(options.url, api_key=options.api_key, config=config), options.url
    if pipeline is None:
        from app.metrics import Metrics
        from app.profiles import load_pipeline

        try:
            pipeline = load_pipeline(settings, Metrics())
        except (OSError, ValueError, RuntimeError) as exc:  # the loaders' errors name what is missing
            raise EvaluationError(f"cannot load the {settings.profile} profile: {exc}") from exc
    from app.audio.speech_gate import SpeechGateConfig

    config = InProcessConfig(batch_size=options.batch_size, max_segment_seconds=settings.max_segment_seconds,
                             max_audio_seconds=settings.max_audio_seconds, progress=options.progress,
                             speech_gate=SpeechGateConfig.from_settings(settings))
    return InProcessRunner(pipeline, config), f"in-process, profile {settings.profile}: {pipeline.description}"


def run(options: EvaluateOptions, settings: Settings | None = None, *,
        pipeline: Pipeline | None = None) -> EvaluationResult:
    """Evaluate, write report.json and the plot to `options.out_dir`, return the result."""
    from app.evaluation.report import write_plot, write_report
    from app.settings import Settings

    settings = settings or Settings(routing="router")
    started = time.perf_counter()
    items = read_manifest(options.manifest, default_language=options.language)  # fails before loading models
    runner, source = build_runner(options, settings, pipeline)
    try:
        result = evaluate(options.manifest, items, runner, source=source,
                          configured_threshold=settings.threshold)
    finally:
        getattr(runner, "close", lambda: None)()
    result = replace(result, wall_seconds=time.perf_counter() - started)  # including model loading
    options.out_dir.mkdir(parents=True, exist_ok=True)
    write_report(result, options.out_dir / "report.json")
    write_plot(result, options.out_dir / "error_vs_threshold.png")
    return result


def main(options: EvaluateOptions) -> int:
    """The CLI entry: print the summary; exit 2 with a message for a bad manifest or item."""
    from app.evaluation.report import summary

    if options.batch_size < 1:
        print("evaluate: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        result = run(options)
    except (ManifestError, EvaluationError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(summary(result, options.out_dir))
    return 0
