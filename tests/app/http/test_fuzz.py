"""Property-based fuzz of the HTTP API (hypothesis): arbitrary form fields, values and file bytes never
produce a 5xx, and every error is in OpenAI's envelope."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.pipeline import Pipeline
from app.main import create_app
from tests.app.conftest import fake_settings
from tests.fakes import FakeRecognizer, FakeRouter, tone
from tests.server import running, wav_bytes

FIELDS = ["model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]", "route",
          "threshold", "stream", "bogus"]
VALUES = st.one_of(st.sampled_from(["json", "text", "srt", "vtt", "verbose_json", "auto", "base", "robust", "en",
                                    "english", "0", "0.0", "1", "-1", "nan", "inf", "1e309", "", "segment", "word",
                                    "true", "false"]), st.text(max_size=40))
GOOD_WAV = wav_bytes(tone(0.5))
FILES = st.one_of(st.just(GOOD_WAV), st.binary(max_size=2000),
                  st.binary(max_size=400).map(lambda b: GOOD_WAV[:44] + b), st.just(GOOD_WAV[: len(GOOD_WAV) // 2]))


def test_transcriptions_never_5xx():
    app = create_app(fake_settings(), pipeline=Pipeline(FakeRecognizer(languages_robust=None), FakeRouter()))
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(fields=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=5), data=FILES,
               send_file=st.booleans())
        def check(fields, data, send_file):
            files = {"file": ("f.wav", data)} if send_file else {"other": ("x", b"1")}
            answer = client.post("/v1/audio/transcriptions", data=fields, files=files)
            assert answer.status_code < 500, (fields, answer.text)
            if answer.status_code >= 400:
                error = answer.json()["error"]
                assert error["message"] and error["type"] and error["code"]

        check()
        assert client.post("/v1/audio/transcriptions", files={"file": ("ok.wav", GOOD_WAV)}).status_code == 200
        assert client.get("/readyz").status_code == 200
