"""`timestamp_granularities[]=word` over HTTP on the tests profile (tiny Qwen3-ASR + the tiny forced aligner
loaded through the production loaders): the form rules, the answer, the stream, the openai client, and
the 400 of a deployment without an aligner."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.main import create_app
from tests.app.conftest import fake_settings
from tests.fakes import FakeRecognizer, FakeRouter, tone
from tests.server import running, wav_bytes


@pytest.fixture(scope="module")
def tests_profile():
    app = create_app(fake_settings(profile="tests", speech_gate=False))
    with running(app, timeout=300) as base:
        yield base


def post(base: str, audio: np.ndarray, **fields) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("clip.wav", wav_bytes(audio))},
                      data=fields, timeout=120)


def speech_like(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (0.2 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)


def test_words_come_with_verbose_json_from_the_start_of_the_file(tests_profile):
    body = post(tests_profile, speech_like(6.0), response_format="verbose_json",
                **{"timestamp_granularities[]": "word"}).json()
    assert "words" in body and isinstance(body["words"], list)
    spoken = [w for s in body["segments"] if not s["no_speech"] for w in s["text"].split()]
    assert (len(body["words"]) > 0) == bool(spoken)
    for word in body["words"]:
        assert set(word) == {"word", "start", "end"}  # the forced aligner gives no probability
        assert 0.0 <= word["start"] <= word["end"] <= body["duration"] + 1e-3
    plain = post(tests_profile, speech_like(6.0), response_format="verbose_json").json()
    assert "words" not in plain and plain["text"] == body["text"]


def test_words_need_verbose_json_and_unknown_granularities_are_refused(tests_profile):
    answer = post(tests_profile, speech_like(1.0), **{"timestamp_granularities[]": "word"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "timestamp_granularities[]"
    answer = post(tests_profile, speech_like(1.0), response_format="verbose_json",
                  **{"timestamp_granularities[]": "sentence"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "unsupported_value"


def test_the_stream_done_event_carries_the_words(tests_profile):
    answer = post(tests_profile, speech_like(6.0), stream="true", **{"timestamp_granularities[]": "word"})
    done = next(json.loads(line[6:]) for line in answer.text.splitlines()
            if line.startswith("data: ") and "transcript.text.done" in line)
    assert "words" in done and all({"word", "start", "end"} <= set(w) for w in done["words"])


def test_the_openai_client_parses_the_words(tests_profile):
    from openai import OpenAI

    client = OpenAI(base_url=f"{tests_profile}/v1", api_key="unused")
    result = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", wav_bytes(speech_like(6.0))),
                                                response_format="verbose_json", timestamp_granularities=["word"])
    assert result.words is not None
    assert all(isinstance(w.start, float) and w.end >= w.start for w in result.words)
    assert httpx.get(f"{tests_profile}/v1/models").json()["data"][0]["word_timestamps"] is True


def test_without_an_aligner_a_word_request_is_a_400_that_says_what_is_missing():
    pipeline = Pipeline(FakeRecognizer(), FakeRouter(), description="fake", guards=GuardConfig(enabled=False))
    with running(create_app(fake_settings(), pipeline=pipeline)) as base:
        answer = post(base, tone(1.0), response_format="verbose_json", **{"timestamp_granularities[]": "word"})
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["code"] == "word_timestamps_unavailable"
        assert "MEGA_ASR_ALIGNER_DIR" in error["message"] and error["param"] == "timestamp_granularities[]"
        assert httpx.get(f"{base}/v1/models").json()["data"][0]["word_timestamps"] is False
        assert post(base, tone(1.0), response_format="verbose_json").status_code == 200
