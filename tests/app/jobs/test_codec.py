"""Stored segment results round-trip whole and generically (app/jobs/codec.py)."""

from __future__ import annotations

import dataclasses
import json

from app.engine.guards import GuardEvent
from app.engine.pipeline import SegmentResult
from app.jobs.codec import decode_result, encode_result, from_plain, to_plain
from models.recognition import TimedText
from models.recognition import Word as RecognizedWord


def full_result() -> SegmentResult:
    return SegmentResult(text="Go forward 10 meters.", language="en", route="robust", router_score=0.961234567,
                         reason="router", num_tokens=7, spans=(TimedText(0.0, 1.25, "Go forward"),
                                                               TimedText(1.25, 2.786, "10 meters.")),
                         flags=("low_logprob",), guards=(GuardEvent("low_logprob", "flag"),),
                         words=(RecognizedWord("Go", 0.0, 0.31, 0.9), RecognizedWord("forward", 0.31, 0.8)))


def test_every_field_of_a_segment_result_round_trips():
    result = full_result()
    assert decode_result(encode_result(result)) == result
    assert {f.name for f in dataclasses.fields(SegmentResult)} == set(json.loads(encode_result(result)))


def test_a_result_stored_before_a_field_existed_reads_back_with_its_default():
    stored = json.loads(encode_result(full_result()))
    del stored["flags"], stored["guards"]
    assert decode_result(json.dumps(stored)) == dataclasses.replace(full_result(), flags=(), guards=())


@dataclasses.dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str


@dataclasses.dataclass(frozen=True)
class Grown:
    """A result type with the kinds of fields SegmentResult grows (word timings, optional scores)."""

    text: str
    words: tuple[Word, ...] = ()
    score: float | None = None
    nested: tuple[tuple[int, str], ...] = ()


def test_new_nested_fields_round_trip_without_changes_to_the_codec():
    value = Grown("hi there", words=(Word(0.0, 0.4, "hi"), Word(0.5, 1.0, "there")), score=1.0, nested=((1, "a"),))
    assert from_plain(Grown, json.loads(json.dumps(to_plain(value)))) == value
    assert from_plain(Grown, {"text": "x", "score": 2}) == Grown("x", score=2.0)
