"""Word times: which segments can be timed, one aligner call for a group of them, and the speech-edge
correction of the times.

The aligner (models.recognition.Aligner) times the words of each segment's final text (after the guards:
a blanked segment has no words, a cut loop keeps only the words of the kept text). Cross-attention times
(the demo's Whisper) put word ends early and give a pause to the word after it (DESIGN.md §10); the
speech runs that silero found in the segment (app/audio/speech_gate.py) correct both: a word that starts
in a pause starts where speech resumes, the first word of a run starts with it, and a word that ends
inside a run that goes on until a pause ends with the run (one that ends in a pause, where the run ended). The correction is measured by `python -m bench.word_times`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace

from models.recognition import Aligner, AlignmentItem, Word

Runs = tuple[tuple[float, float], ...]  # speech runs (start, end) in seconds from the segment start, in order


class WordsNotAvailable(ValueError):
    """Word times were asked for but this deployment (or this language) has no aligner."""


@dataclass(frozen=True)
class WordRequest:
    """One finished segment to time: what the aligner gets, and the segment's speech runs."""

    item: AlignmentItem
    speech: Runs = ()


SPEECH_PAD_SECONDS = 0.05  # silero's runs start late and end early by about a frame (32 ms) or two


def refine_with_speech(words: Sequence[Word], runs: Runs, *, starts: bool = True, ends: bool = True,
                       pad: float = SPEECH_PAD_SECONDS) -> tuple[Word, ...]:
    """Word times moved to speech edges (see the module docstring), the runs widened by `pad` on each side
    (silero's own get_speech_timestamps pads by 30 ms); without runs, unchanged."""
    if not runs or not words:
        return tuple(words)
    runs = tuple((max(0.0, start - pad), end + pad) for start, end in runs)
    out = list(words)
    if starts:
        out = [_snap_start(word, out[i - 1].end if i else None, runs) for i, word in enumerate(out)]
    if ends:
        out = [_snap_end(word, out[i + 1].start if i + 1 < len(out) else float("inf"), runs)
               for i, word in enumerate(out)]
    return tuple(_monotonic(out))


def _run_at(runs: Runs, time: float) -> int | None:
    """Index of the run holding `time`, else None."""
    index = bisect.bisect_right([start for start, _ in runs], time) - 1
    return index if index >= 0 and runs[index][0] <= time <= runs[index][1] else None


def _snap_start(word: Word, previous_end: float | None, runs: Runs) -> Word:
    index = _run_at(runs, word.start)
    if index is not None:
        run_start, run_end = runs[index]
        if index + 1 < len(runs) and word.end - runs[index + 1][0] > run_end - word.start:
            return replace(word, start=runs[index + 1][0])  # spans a pause, mostly after it: it is the next run's
        if previous_end is None or previous_end <= run_start:  # the first word of a run starts with the run
            return replace(word, start=run_start)
        return word
    later = [start for start, _ in runs if start > word.start]
    if later and later[0] < word.end:  # the word began in a pause: its sound begins where speech resumes
        return replace(word, start=later[0])
    return word


def _snap_end(word: Word, next_start: float, runs: Runs) -> Word:
    index = _run_at(runs, word.end)
    if index is None:  # ends in a pause: its sound ended with the last run it overlaps
        inside = [end for start, end in runs if word.start < end < word.end]
        return replace(word, end=inside[-1]) if inside else word
    run_end = runs[index][1]
    if run_end <= next_start:  # the next word starts after this run's pause: the word lasts until the pause
        return replace(word, end=run_end)
    return word


def _monotonic(words: list[Word]) -> list[Word]:
    """No word starts before the previous one ends, none ends before it starts."""
    fixed: list[Word] = []
    for word in words:
        start = max(word.start, fixed[-1].end) if fixed else word.start
        fixed.append(replace(word, start=start, end=max(word.end, start)))
    return fixed


class WordTimer:
    """An aligner with the service's rules around it: supported languages, one call per group, corrections."""

    def __init__(self, aligner: Aligner, *, speech_edges: bool = True) -> None:
        self.aligner = aligner
        self.speech_edges = speech_edges

    def can_align(self, robust: bool, language: str | None) -> bool:
        languages = self.aligner.languages(robust)
        return languages is None or language is None or language in languages

    def align(self, requests: Sequence[WordRequest]) -> list[tuple[Word, ...]]:
        """Words per request, in order (one aligner call)."""
        if not requests:
            return []
        results = self.aligner.align([request.item for request in requests])
        if len(results) != len(requests):
            raise RuntimeError(f"aligner returned {len(results)} results for {len(requests)} segments")
        if not self.speech_edges:
            return [tuple(words) for words in results]
        return [refine_with_speech(words, request.speech) for words, request in zip(results, requests)]
