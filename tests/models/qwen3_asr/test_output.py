"""Reading Qwen3-ASR answers."""

from __future__ import annotations

import pytest

from models.qwen3_asr.output import parse_asr_output


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("language English<asr_text>the text", ("en", "the text")),
        ("  language Chinese<asr_text> 你好。 \n", ("zh", "你好。")),
        ("language German<asr_text>", ("de", "")),
        ("language None<asr_text>", (None, "")),
        ("language none<asr_text>  ", (None, "")),
        ("language None<asr_text>Thank you for watching.", (None, "")),  # no speech: what follows is not heard
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
