"""Reading Qwen3-ASR answers, and upstream's repetition guard."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.qwen3_asr.output import collapse_repetitions, parse_asr_output


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("language English<asr_text>the text", ("en", "the text")),
        ("  language Chinese<asr_text> 你好。 \n", ("zh", "你好。")),
        ("language German<asr_text>", ("de", "")),
        ("language None<asr_text>", (None, "")),
        ("language none<asr_text>  ", (None, "")),
        ("language Sichuanese<asr_text>text", (None, "text")),  # a name the table does not know
        ("language English\nextra<asr_text>text", ("en", "text")),  # only the first header line counts
        ("just some words", (None, "just some words")),  # no tag at all
        ("  ", (None, "")),
        ("", (None, "")),
    ],
)
def test_parse_detected_language(raw, expected):
    assert parse_asr_output(raw) == expected


def test_parse_forced_language_output_is_the_text():
    # the prompt already ended in "language French<asr_text>", so the answer is only text
    assert parse_asr_output(" bonjour tout le monde ", forced_language="fr") == ("fr", "bonjour tout le monde")
    assert parse_asr_output("", forced_language="fr") == ("fr", "")
    # a model that repeats the header anyway: drop it, keep the forced language
    assert parse_asr_output("language French<asr_text>bonjour", forced_language="fr") == ("fr", "bonjour")


def test_parse_keeps_text_asr_tag_is_split_once():
    assert parse_asr_output("language English<asr_text>a<asr_text>b") == ("en", "a<asr_text>b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 21, "a"),  # more than 20 of one character
        ("a" * 20, "a" * 20),  # 20 is not more than 20 (and too short for the pattern scan)
        ("x" + "ha" * 25 + "!", "xha!"),
        ("hello " * 30 + "end", "hello end"),
        ("word " * 5, "word " * 5),
        ("这是" * 22, "这是"),
        ("abc" + "z" * 40 + "def" + "y" * 3, "abczdefyyy"),
        ("", ""),
    ],
)
def test_collapse_repetitions(text, expected):
    assert collapse_repetitions(text) == expected


def test_collapse_threshold_is_a_parameter():
    assert collapse_repetitions("ab" * 4, threshold=3) == "ab"
    assert collapse_repetitions("ab" * 2, threshold=3) == "abab"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab c", min_size=1, max_size=4),
                          st.sampled_from([1, 2, 3, 5, 19, 20, 21, 30])), max_size=6),
       st.sampled_from([3, 5, 20]))
def test_collapse_matches_upstream_reference(runs, threshold):
    """Same result as upstream's function (as kept in transformers' Qwen3-ASR processor)."""
    from transformers.models.qwen3_asr.processing_qwen3_asr import _detect_and_fix_repetitions

    text = "".join(unit * count for unit, count in runs)
    assert collapse_repetitions(text, threshold) == _detect_and_fix_repetitions(text, threshold)
