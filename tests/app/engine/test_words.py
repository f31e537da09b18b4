"""Word times in the service: the speech-edge correction, the guards' rules for words, one aligner call per
group in the engine, and no aligner work for requests that asked for no words."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.guards import GuardConfig
from app.engine.iteration import Engine
from app.engine.pipeline import Pipeline, SegmentJob
from app.engine.words import WordsNotAvailable, WordTimer, refine_with_speech
from models.recognition import Recognition, Word, open_session
from tests.fakes import FakeAligner, FakeRouter, SteppingRecognizer


def test_a_word_starting_in_a_pause_starts_where_speech_resumes():
    words = [Word("go", 0.0, 0.8), Word("on", 0.8, 1.1)]
    fixed = refine_with_speech(words, ((0.5, 1.4),), pad=0.0)
    assert fixed[0].start == 0.5 and fixed[1].end == 1.4  # the last word of the run lasts until the pause


def test_words_inside_connected_speech_keep_their_boundary():
    words = [Word("a", 0.2, 0.5), Word("b", 0.5, 0.9)]
    fixed = refine_with_speech(words, ((0.2, 1.2),), pad=0.0, ends=True)
    assert fixed[0].end == 0.5 and fixed[1].start == 0.5 and fixed[1].end == 1.2


def test_a_pause_goes_to_neither_word():
    # "a" ends early inside run 1; "b" was given the pause and starts inside run 1's tail.
    words = [Word("a", 0.0, 0.3), Word("b", 0.3, 1.5)]
    fixed = refine_with_speech(words, ((0.1, 0.6), (1.0, 1.6)), pad=0.0)
    assert (fixed[0].start, fixed[0].end) == (0.1, 0.6)
    assert (fixed[1].start, fixed[1].end) == (1.0, 1.6)


def test_no_runs_leaves_times_alone_and_times_never_go_backwards():
    words = [Word("a", 0.0, 0.4), Word("b", 0.4, 0.9)]
    assert refine_with_speech(words, ()) == tuple(words)
    fixed = refine_with_speech(words, ((0.0, 0.2), (0.25, 2.0)), pad=0.1)
    assert all(w.start <= w.end for w in fixed) and fixed[0].end <= fixed[1].start


def pipeline_with(aligner: FakeAligner | None, recognizer=None, **guards) -> Pipeline:
    return Pipeline(recognizer or SteppingRecognizer(), FakeRouter(), guards=GuardConfig(**guards),
                    words=WordTimer(aligner, speech_edges=False) if aligner is not None else None)


def finished(pipeline: Pipeline, text: str, language: str = "en"):
    job = SegmentJob(audio=np.zeros(16_000, np.float32), route="base", words=True)
    routed = pipeline.route([job])[0]
    rec = Recognition(text=text, language=language, num_tokens=5, tokens=(1, 2, 3), avg_logprob=-0.1)
    return routed, rec, pipeline.finish(routed, rec)


def test_blanked_text_has_no_words_and_a_cut_loop_is_aligned_without_its_tokens():
    aligner = FakeAligner()
    pipeline = pipeline_with(aligner)
    loop = "go on " + "yes " * 12
    results = pipeline.align([finished(pipeline, "♪ ♪"), finished(pipeline, "hello there."), finished(pipeline, loop)])
    assert results[0].text == "" and results[0].words == ()
    assert [w.word for w in results[1].words] == ["hello", "there"]
    assert len(aligner.calls) == 1 and len(aligner.calls[0]) == 2  # one call, blanked segment left out
    cut = aligner.calls[0][1]
    assert cut.text == results[2].text != loop.strip() and cut.tokens == ()  # kept text only, retokenized
    assert aligner.calls[0][0].tokens == (1, 2, 3)  # unchanged text keeps the recognizer's tokens


def test_a_language_the_aligner_does_not_know_is_flagged_not_silently_dropped():
    pipeline = pipeline_with(FakeAligner(frozenset({"en"})), enabled=False)
    result = pipeline.align([finished(pipeline, "hola amigo", language="es")])[0]
    assert result.words == () and "words_unavailable" in result.flags
    with pytest.raises(WordsNotAvailable):
        pipeline.check_words("es", "auto")
    pipeline.check_words("en", "auto")
    with pytest.raises(WordsNotAvailable, match="no aligner"):
        pipeline_with(None).check_words(None, "auto")


def run_until_done(engine: Engine, jobs: list[SegmentJob]):
    it = engine.iterate([], list(enumerate(jobs)))
    results, finished_words = {}, dict(it.finished)
    updates = list(it.updates)
    for _ in range(200):
        if not engine.session.running:
            break
        it = engine.iterate([], [])
        updates += it.updates
        finished_words.update(it.finished)
    results = {u.key: u.result for u in updates if u.result is not None}
    return results, finished_words


def test_the_engine_aligns_finished_word_rows_in_one_call_and_never_for_rows_without_words():
    aligner = FakeAligner()
    recognizer = SteppingRecognizer()
    pipeline = pipeline_with(aligner, recognizer, enabled=False)
    engine = Engine(pipeline, open_session(recognizer, 8))
    audio = np.zeros(16_000, np.float32)
    jobs = [SegmentJob(audio=audio, route="base", words=True), SegmentJob(audio=audio, route="base"),
            SegmentJob(audio=audio, route="base", words=True)]
    results, with_words = run_until_done(engine, jobs)
    assert set(results) == {0, 1, 2} and set(with_words) == {0, 2}
    assert len(aligner.calls) == 1 and len(aligner.calls[0]) == 2  # same length: they end at the same step
    assert with_words[0].words[0].word == "base" and with_words[0].text == results[0].text

    aligner.calls.clear()
    results, with_words = run_until_done(engine, [SegmentJob(audio=audio, route="base")] * 3)
    assert len(results) == 3 and with_words == {} and aligner.calls == []


def test_an_aligner_that_fails_on_one_segment_fails_that_segment_alone():
    class Picky(FakeAligner):
        def align(self, items):
            if any("robust" in item.text for item in items):
                raise RuntimeError("cannot align this one")
            return super().align(items)

    recognizer = SteppingRecognizer(languages_robust=frozenset({"en"}))
    pipeline = pipeline_with(Picky(), recognizer, enabled=False)
    engine = Engine(pipeline, open_session(recognizer, 8))
    audio = np.zeros(16_000, np.float32)
    it = engine.iterate([], [(0, SegmentJob(audio=audio, route="base", words=True)),
                             (1, SegmentJob(audio=audio, route="robust", words=True))])
    failed, done = dict(it.failed), dict(it.finished)
    while engine.session.running:
        it = engine.iterate([], [])
        failed.update(it.failed)
        done.update(it.finished)
    assert set(failed) == {1} and set(done) == {0}
