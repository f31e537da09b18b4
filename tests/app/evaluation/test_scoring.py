from __future__ import annotations

import math

import pytest

from app.evaluation.scoring import ErrorCount, corpus_rate, count_errors, normalize


def test_english_normalisation_ignores_case_punctuation_and_number_spelling():
    assert count_errors("Hello, World!", "hello world", "en") == ErrorCount(errors=0, units=2, unit="word")
    assert count_errors("go forward ten meters", "Go forward 10 meters.", "en").errors == 0
    assert count_errors("the colour grey", "the color gray", "en").errors == 0


def test_word_errors_count_substitutions_deletions_and_insertions():
    # reference a b c d, hypothesis a x c: one substitution (b->x), one deletion (d)
    assert count_errors("a b c d", "a x c", "en") == ErrorCount(errors=2, units=4, unit="word")
    # one insertion
    assert count_errors("the cat sat", "the cat sat down", "en") == ErrorCount(errors=1, units=3, unit="word")
    assert count_errors("the cat sat", "", "en") == ErrorCount(errors=3, units=3, unit="word")


def test_other_languages_use_the_basic_normaliser():
    assert count_errors("Bonjour, le Monde !", "bonjour le monde", "fr").errors == 0
    assert normalize("Bonjour, le Monde !", "fr") == "bonjour le monde"
    # the English normaliser's spelling table is not applied to other languages
    assert count_errors("colour", "color", "fr").errors == 1
    assert count_errors("Hello, World!", "hello world", None).errors == 0


def test_chinese_is_scored_by_characters_in_simplified_form():
    assert count_errors("这是一个测试", "這是一個測試。", "zh") == ErrorCount(errors=0, units=6, unit="char")
    # spaces and punctuation do not count; two of four characters missing is a CER of 0.5
    assert count_errors("你好，世界", "你 好", "zh") == ErrorCount(errors=2, units=4, unit="char")
    assert count_errors("你好世界", "你好世界", "zh").rate == 0.0


def test_japanese_uses_characters_without_simplifying():
    count = count_errors("今日は", "今日わ", "ja")
    assert count == ErrorCount(errors=1, units=3, unit="char")


def test_empty_references():
    assert count_errors("", "", "en") == ErrorCount(errors=0, units=0, unit="word")
    hallucination = count_errors("", "Thank you for watching.", "en")
    assert hallucination.errors == 4 and hallucination.units == 0 and math.isinf(hallucination.rate)


def test_corpus_rate_pools_errors_instead_of_averaging_rates():
    counts = [ErrorCount(1, 10, "word"), ErrorCount(1, 2, "word")]
    assert corpus_rate(counts) == pytest.approx(2 / 12)
    assert corpus_rate([]) == 0.0
