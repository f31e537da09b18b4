"""Word times from Whisper's cross-attention on the real demo models and the hand-labelled reference
sentences (tests/fixtures/audio/words: praatio's examples, provenance beside them)."""

from __future__ import annotations

import json

import pytest

from models.quantized import kernels_missing
from models.recognition import AlignmentItem, RecognitionItem
from models.whisper.alignment import WhisperAligner, alignment_heads
from models.whisper.recognizer import WhisperRecognizer
from tests.models.whisper import AUDIO_DIR, converted_demo_model, load_clip

RAW_BOUND_SECONDS = 0.25  # raw cross-attention times (no speech-edge correction): measured mean 0.06-0.1 s here


@pytest.fixture(scope="module", params=[None, "int8"], ids=["float32", "int8"])
def tiny(request, tmp_path_factory) -> WhisperRecognizer:
    """tiny.en as the demo runs it: float32, and the int8 CPU path (packed Linear layers, row attention)."""
    if request.param and kernels_missing():
        pytest.skip(f"int8 kernels unavailable: {kernels_missing()}")
    return WhisperRecognizer.from_pretrained(converted_demo_model("tiny_en", tmp_path_factory), packed=request.param)


def recognized(recognizer: WhisperRecognizer, name: str) -> tuple[AlignmentItem, AlignmentItem]:
    """The clip recognized with words asked for, as an item with the kept encoder output and one without."""
    audio = load_clip(f"words/{name}.wav")
    rec = recognizer.recognize([RecognitionItem(audio=audio, language="en", words=True)])[0]
    assert rec.alignment_state is not None and rec.tokens
    kept = AlignmentItem(audio=audio, text=rec.text, language="en", tokens=rec.tokens, state=rec.alignment_state)
    return kept, AlignmentItem(audio=audio, text=rec.text, language="en")


def test_the_demo_models_carry_openais_alignment_heads(tiny):
    assert alignment_heads(tiny.model) == [(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]


def test_words_follow_the_hand_labelled_boundaries(tiny):
    reference = json.loads((AUDIO_DIR / "words" / "words.json").read_text())
    aligner = WhisperAligner(tiny)
    for name in ("bobby", "mary"):
        kept, fresh = recognized(tiny, name)
        words = aligner.align([kept])[0]
        assert [w.word.lower() for w in words] == [w["word"].lower() for w in reference[f"{name}.wav"]]
        for word, truth in zip(words, reference[f"{name}.wav"]):
            assert abs(word.end - truth["end"]) < RAW_BOUND_SECONDS, (name, word, truth)
            assert 0.0 < word.probability <= 1.0
        inner = [abs(w.start - t["start"]) for w, t in zip(words[1:], reference[f"{name}.wav"][1:])]
        assert max(inner) < RAW_BOUND_SECONDS
        # The kept encoder output is the encoder's own: aligning without it recomputes the same times.
        assert aligner.align([fresh])[0] == words


def test_a_batch_of_rows_aligns_like_each_row_alone(tiny):
    aligner = WhisperAligner(tiny)
    items = [recognized(tiny, name)[0] for name in ("bobby", "mary")]
    retokenized = AlignmentItem(audio=items[0].audio, text=items[0].text, language="en")  # no tokens: tokenized
    batch = [*items, retokenized]
    together = aligner.align(batch)
    alone = [aligner.align([item])[0] for item in batch]
    for a, b in zip(together, alone):
        assert [w.word for w in a] == [w.word for w in b]
        assert all(abs(x.start - y.start) <= 0.02 and abs(x.end - y.end) <= 0.02 for x, y in zip(a, b))
