"""Reassembly of segment results and the subtitle/text renderings."""

from __future__ import annotations

from app.engine.pipeline import SegmentResult
from app.engine.transcript import assemble
from app.http import formats
from models.recognition import TimedText


def result(text: str, route: str = "base", score: float | None = 0.2, language: str = "en", spans=()):
    return SegmentResult(text=text, language=language, route=route, router_score=score, reason="router",
                         num_tokens=len(text), spans=tuple(spans))


def test_assemble_joins_in_order_with_global_times_and_mixed_route():
    windows = [(0.0, 28.0), (28.0, 41.5), (41.5, 60.0)]
    t = assemble(windows, [result("hello there"), None, result("general kenobi", "robust", 0.8)], 60.0, None)
    assert t.text == "hello there general kenobi"
    assert [(s.start, s.end, s.no_speech) for s in t.segments] == [(0.0, 28.0, False), (28.0, 41.5, True),
                                                                   (41.5, 60.0, False)]
    assert [(s.start, s.end) for s in t.spoken] == [(0.0, 28.0), (41.5, 60.0)]
    assert t.segments[1].text == "" and t.segments[1].route is None
    assert t.route == "mixed" and t.router_score == 0.8 and t.language == "en" and not t.no_speech


def test_no_speech_segments_are_in_verbose_json_only_and_flags_reach_the_file():
    flagged = SegmentResult(text="noisy words", language="en", route="robust", router_score=0.9, reason="router",
                            num_tokens=3, flags=("low_logprob",))
    blanked = result("", route="robust", score=0.95)  # the guards blanked what the model said
    t = assemble([(0.0, 5.0), (5.0, 9.0), (9.0, 12.0)], [None, blanked, flagged], 12.0, "en")
    assert t.text == "noisy words" and not t.no_speech and t.flags == ("low_logprob",)
    verbose = formats.as_verbose_json(t)
    assert [(s["no_speech"], s["text"], s["route"], s["flags"]) for s in verbose["segments"]] == [
        (True, "", None, []), (True, "", "robust", []), (False, "noisy words", "robust", ["low_logprob"])]
    assert [s["id"] for s in verbose["segments"]] == [0, 1, 2] and verbose["flags"] == ["low_logprob"]
    assert formats.as_srt(t).startswith("1\n00:00:09,000 --> 00:00:12,000\nnoisy words")
    assert formats.as_vtt(t).count("-->") == 1


def test_assemble_uses_model_spans_shifted_by_window_start():
    spans = [TimedText(0.0, 2.0, " one"), TimedText(2.0, 4.5, " two")]
    t = assemble([(0.0, 30.0), (30.0, 35.0)], [result("x"), result("one two", spans=spans)], 35.0, "en")
    assert [(s.start, s.end, s.text) for s in t.segments] == [(0.0, 30.0, "x"), (30.0, 32.0, "one"),
                                                              (32.0, 34.5, "two")]


def test_chinese_segments_join_without_spaces():
    t = assemble([(0, 1), (1, 2)], [result("你好", language="zh"), result("世界", language="zh")], 2.0, None)
    assert t.text == "你好世界" and formats.language_name(t.language) == "chinese"


def test_all_silent_is_no_speech():
    t = assemble([(0.0, 3.0)], [None], 3.0, None)
    assert t.text == "" and t.no_speech and t.route == "none" and t.router_score is None
    assert formats.as_srt(t) == "" and formats.as_vtt(t) == "WEBVTT\n\n" and formats.as_text(t) == ""


def test_srt_and_vtt_clock_and_cue_safety():
    t = assemble([(0.0, 3661.5), (3661.5, 3662.0)], [result("a --> b\n\nc"), result("d")], 3662.0, "en")
    srt = formats.as_srt(t)
    assert srt.startswith("1\n00:00:00,000 --> 01:01:01,500\na -> b c\n\n2\n01:01:01,500 --> 01:01:02,000\nd\n")
    assert "00:00:00.000 --> 01:01:01.500" in formats.as_vtt(t)


def test_json_shapes():
    t = assemble([(0.0, 2.4)], [result("hi", score=0.12345)], 2.4, "en")
    body = formats.as_json(t)
    assert body == {"text": "hi", "language": "english", "duration": 2.4, "route": "base",
                    "router_score": 0.1235, "no_speech": False, "flags": [],
                    "usage": {"type": "duration", "seconds": 2}}
    verbose = formats.as_verbose_json(t)
    assert verbose["segments"][0]["route"] == "base" and verbose["task"] == "transcribe"
