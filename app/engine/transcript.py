"""A request's transcript, reassembled from its segments' results with global timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.engine.pipeline import SegmentResult
from models.recognition import Word

# Languages written without spaces between words: segments are joined without a separator.
UNSPACED = {"zh", "ja", "th", "yue", "lo", "km", "my"}


@dataclass(frozen=True)
class TimedSegment:
    id: int
    start: float  # seconds from the start of the file
    end: float
    text: str
    route: str | None  # None for spans the model never saw (silence, no speech)
    router_score: float | None
    no_speech: bool = False  # a window with no text: the gate found no speech, or the guards blanked it
    flags: tuple[str, ...] = ()  # guards that kept this text but doubt it


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    route: str  # base | robust | mixed | none (nothing needed recognition)
    router_score: float | None  # the file's P(degraded): the highest segment score (see README)
    segments: tuple[TimedSegment, ...]  # every window, in order; no-speech windows with empty text
    no_speech: bool
    flags: tuple[str, ...] = ()  # every flag of the file's segments, once each
    words: tuple[Word, ...] | None = None  # word times from the start of the file; None = not asked for

    @property
    def spoken(self) -> tuple[TimedSegment, ...]:
        """The segments that have text (what subtitles show)."""
        return tuple(segment for segment in self.segments if not segment.no_speech)


def assemble(windows: Sequence[tuple[float, float]], results: Sequence[SegmentResult | None],
             duration: float, language: str | None, words: bool = False) -> Transcript:
    """Join per-window results (None = a window without speech, not sent to the model) into one transcript.

    `windows` are the cut points of the segmenter in seconds; a result's own spans (Whisper
    timestamps) are shifted by its window start, else the window is one segment. `words`: the request asked
    for word times; each result's words are shifted by its window start the same way.
    """
    segments: list[TimedSegment] = []
    for (start, end), result in zip(windows, results):
        if result is None or not result.text.strip():
            route, score = (None, None) if result is None else (result.route, result.router_score)
            segments.append(TimedSegment(len(segments), start, end, "", route, score, no_speech=True))
            continue
        for span_start, span_end, text in _spans(result, start, end):
            segments.append(TimedSegment(len(segments), span_start, span_end, text, result.route,
                                         result.router_score, flags=result.flags))
    used = [r for r in results if r is not None]
    detected = language or _majority_language(used)
    joiner = "" if detected in UNSPACED else " "
    text = joiner.join(seg.text for seg in segments if not seg.no_speech).strip()
    routes = {r.route for r in used}
    route = "none" if not routes else routes.pop() if len(routes) == 1 else "mixed"
    scores = [r.router_score for r in used if r.router_score is not None]
    return Transcript(text=text, language=detected, duration=duration, route=route,
                      router_score=max(scores) if scores else None, segments=tuple(segments),
                      no_speech=not text, flags=tuple(dict.fromkeys(f for seg in segments for f in seg.flags)),
                      words=_file_words(windows, results) if words else None)


def _file_words(windows: Sequence[tuple[float, float]],
                results: Sequence[SegmentResult | None]) -> tuple[Word, ...]:
    """Every segment's words with times from the start of the file (a blanked segment has none)."""
    out: list[Word] = []
    for (start, end), result in zip(windows, results):
        if result is None or not result.text.strip():
            continue
        for word in result.words:
            out.append(Word(word.word, min(end, start + word.start), min(end, start + word.end), word.probability))
    return tuple(out)


def _spans(result: SegmentResult, start: float, end: float) -> list[tuple[float, float, str]]:
    spans = [(start + s.start, min(end, start + s.end), s.text.strip()) for s in result.spans if s.text.strip()]
    return spans or [(start, end, result.text.strip())]


def _majority_language(results: Sequence[SegmentResult]) -> str | None:
    counts: dict[str, int] = {}
    for result in results:
        if result.language and result.text.strip():
            counts[result.language] = counts.get(result.language, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None
