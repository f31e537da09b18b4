"""WER of benchmark answers against the clips' references (the evaluation command's scoring)."""

from __future__ import annotations

from app.evaluation.scoring import corpus_rate, count_errors
from bench.clips import Clip


def wer(clips: list[Clip], texts: dict[str, str]) -> float:
    unique = {c.name: c for c in clips}.values()
    counts = [count_errors(clip.reference, texts[clip.name], "en") for clip in unique if clip.name in texts]
    return corpus_rate(counts) if counts else float("nan")
