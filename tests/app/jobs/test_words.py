"""Word times through a job: the job's verbose_json, words included, is the synchronous answer byte for byte,
with each segment's words placed from the start of the file (fake recognizer and aligner, real server,
real job store)."""

from __future__ import annotations

import httpx
import numpy as np

from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.engine.words import WordTimer
from app.main import create_app
from tests.app.conftest import fake_settings
from tests.app.jobs.test_api import JOBS, submit, wait_done
from tests.fakes import FakeAligner, FakeRecognizer, FakeRouter, tone
from tests.server import running, wav_bytes


def test_a_jobs_words_are_the_synchronous_answers(tmp_path):
    aligner = FakeAligner()
    pipeline = Pipeline(FakeRecognizer(languages_robust=frozenset({"en"})), FakeRouter(), description="fake",
                        guards=GuardConfig(enabled=False), words=WordTimer(aligner, speech_edges=False))
    settings = fake_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}")
    audio = wav_bytes(np.concatenate([tone(40.0, level=0.2), tone(30.0, level=0.8, freq=330.0)]))
    fields = {"response_format": "verbose_json", "timestamp_granularities[]": "word"}
    with running(create_app(settings, pipeline=pipeline)) as base:
        sync = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data=fields,
                          timeout=60)
        assert sync.status_code == 200, sync.text
        job = submit(base, audio, **fields).json()
        assert wait_done(base, job["id"])["status"] == "completed"
        got = httpx.get(f"{base}{JOBS}/{job['id']}/transcript", params={"response_format": "verbose_json"})
    assert got.status_code == 200
    assert got.content == sync.content
    body = got.json()
    spoken = [segment for segment in body["segments"] if not segment["no_speech"]]
    assert len(spoken) >= 3
    # The fake aligner times word i of a segment at i..i+0.5 s: each segment's first word starts at its start.
    for segment in spoken:
        inside = [w["start"] for w in body["words"] if segment["start"] <= w["start"] < segment["end"]]
        assert inside and abs(min(inside) - segment["start"]) < 1e-3, segment
    assert [w["word"] for w in body["words"]] == body["text"].split()
