"""The hallucination guards, reason by reason and in both directions: invented text is blanked or cut,
real text is kept (flagged when the decoder doubted it)."""

from __future__ import annotations

import pytest

from app.engine.guards import GuardConfig, GuardEvent, check, compression_ratio, find_loop
from app.engine.pipeline import Pipeline, SegmentJob
from models.recognition import Recognition, TimedText
from tests.fakes import FakeRouter, ScriptedRecognizer, tone

CONFIG = GuardConfig()
REAL = "and mister john dashwood had then leisure to consider how much there might be prudently in his power"


def guarded(text: str, *, avg_logprob: float | None = -0.3, no_speech_prob: float | None = 0.05,
            language: str | None = None, config: GuardConfig = CONFIG):
    return check(text, avg_logprob=avg_logprob, no_speech_prob=no_speech_prob, language=language, config=config)


def test_no_speech_rule_needs_both_signals():
    assert guarded("Thank you.", avg_logprob=-1.4, no_speech_prob=0.9).events == (GuardEvent("no_speech", "blank"),)
    assert guarded("Thank you.", avg_logprob=-1.4, no_speech_prob=0.9).text == ""
    assert guarded("Go forward.", avg_logprob=-0.2, no_speech_prob=0.9).text == "Go forward."  # confident
    kept = guarded("Go forward.", avg_logprob=-1.4, no_speech_prob=0.2)  # speech, decoded with doubt
    assert kept.text == "Go forward." and kept.flags == ("low_logprob",)
    # a model without a no-speech signal (Qwen3-ASR) is never blanked by this rule
    assert guarded("Go forward.", avg_logprob=-1.4, no_speech_prob=None).text == "Go forward."


@pytest.mark.parametrize("text", [".", "...", "♪ ♪", "ʻ‿ʻ ʻ‿ʻ", "- -"])
def test_text_without_a_letter_or_digit_is_blanked(text):
    assert guarded(text).events == (GuardEvent("no_words", "blank"),)


@pytest.mark.parametrize(("text", "language"), [("고기, 고기, 고기", "en"), ("Так что мы можем сказать", "en"),
                                                ("Thank you for watching", "ru"), ("Thank you", "zh")])
def test_text_in_a_script_the_language_cannot_be_is_blanked(text, language):
    assert guarded(text, language=language).events == (GuardEvent("script", "blank"),)


@pytest.mark.parametrize(("text", "language"), [
    ("Go forward 10 meters.", "en"), ("Привет, как дела", "ru"), ("我用iPhone拍照", "zh"),
    ("你好世界", "zh"), ("これは日本語です", "ja"), ("Hello Путин", "en"), ("Привет", None),
    ("Привет", "xx"),  # a language the table does not know is never checked
])
def test_text_in_the_language_s_scripts_is_kept(text, language):
    assert guarded(text, language=language) == guarded(text)  # nothing changed it
    assert guarded(text, language=language).text == text


def test_a_loop_that_is_all_there_is_is_blanked():
    for text in ("고기, " * 40, "AH" + "H" * 60, "Beep beep " * 20, "这是" * 22):
        assert guarded(text).events == (GuardEvent("repetition", "blank"),), text


def test_a_loop_after_real_words_is_cut_to_one_unit_and_flagged():
    result = guarded("Go forward ten meters. " + "Thank you. " * 30)
    assert result.text == "Go forward ten meters. Thank you." and result.flags == ("repetition",)
    assert result.events == (GuardEvent("repetition", "truncate"),)


def test_ordinary_repetition_is_not_a_loop():
    for text in ("no no no no no", "1000000 dollars", "WOOOOO", "ha ha ha", REAL, "it is what it is"):
        assert guarded(text).text == text and not guarded(text).events, text


def test_find_loop_reports_where_and_what():
    loop = find_loop("ok " + "la " * 12 + "end")
    assert loop is not None and (loop.start, loop.unit) == (3, "la ") and loop.repeats >= 12
    assert find_loop("la " * 9, min_repeats=10) is None
    assert find_loop("", min_repeats=10) is None


def test_compression_ratio_blanks_what_the_loop_check_cannot_see():
    pattern = " ".join(f"word{i}" for i in range(12)) + " "  # a 71-character unit: longer than a loop's unit
    text = pattern * 6
    assert find_loop(text) is None and compression_ratio(text) > 2.4
    assert guarded(text).events == (GuardEvent("compression_ratio", "blank"),)
    assert compression_ratio(REAL) < 2.0 and guarded(REAL).text == REAL


def test_thresholds_come_from_the_config():
    strict = GuardConfig(logprob_threshold=-0.1, repetition_min_repeats=3)
    assert guarded("ha ha ha ha", config=strict).events[0].reason == "repetition"
    assert guarded(REAL, config=strict).flags == ("low_logprob",)
    assert guarded("Thank you.", avg_logprob=-2.0, no_speech_prob=0.99, config=GuardConfig(enabled=False)).text


def test_the_pipeline_guards_every_recognizer_row_with_the_expected_language():
    answers = {1: Recognition("고기, 고기, 고기", "ko", 9, avg_logprob=-0.5),  # not English: an English-only path
               2: Recognition("Thank you.", "en", 3, avg_logprob=-1.5, no_speech_prob=0.95),
               3: Recognition("Go forward 10 meters.", "en", 6, segments=(TimedText(0, 2, "Go forward 10 meters."),),
                              avg_logprob=-0.1, no_speech_prob=0.01),
               4: Recognition("Go forward. " + "Go. " * 30, "en", 40, segments=(TimedText(0, 2, "Go forward."),),
                              avg_logprob=-0.2)}
    recognizer = ScriptedRecognizer(answers, languages_base=frozenset({"en"}))
    pipeline = Pipeline(recognizer, FakeRouter(), guards=GuardConfig())
    jobs = [SegmentJob(tone(1.0, 0.1 * key), route="base") for key in answers]
    blank_script, blank_no_speech, kept, cut = pipeline.run_batch(jobs)
    assert (blank_script.text, blank_script.language, blank_script.guards) == \
        ("", None, (GuardEvent("script", "blank"),))
    assert blank_no_speech.text == "" and blank_no_speech.guards[0].reason == "no_speech"
    assert kept.text == "Go forward 10 meters." and kept.spans and not kept.flags
    assert cut.text == "Go forward. Go." and cut.flags == ("repetition",) and cut.spans == ()  # cut text: its timings are gone
    # with a language from the request, the same English-only path checks that language
    [forced] = pipeline.run_batch([SegmentJob(tone(1.0, 0.1), route="base", language="en")])
    assert forced.text == "" and forced.language == "en"
