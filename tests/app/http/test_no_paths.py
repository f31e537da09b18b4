"""No answer shows a path the service has (model directories, the cache, the job store): /v1/models used to
show the model directory in its description."""

from __future__ import annotations

import httpx

from app.main import create_app
from app.settings import Settings
from models.tiny.mega_asr import write_tiny_mega_asr
from tests.server import running


def test_models_and_jobs_answers_name_no_directory(tmp_path):
    model_dir = tmp_path / "weights" / "Mega-ASR"
    write_tiny_mega_asr(model_dir)
    settings = Settings(profile="production", model_dir=model_dir, cache_dir=tmp_path / "cache", dtype="float32",
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store' / 'jobs.sqlite3'}",
                        max_new_tokens=32, speech_gate=False)
    with running(create_app(settings), timeout=300) as base:
        answers = [httpx.get(f"{base}/v1/models"), httpx.get(f"{base}/v1/models/mega-asr"),
                   httpx.get(f"{base}/v1/audio/transcriptions/jobs"), httpx.get(f"{base}/readyz"),
                   httpx.get(f"{base}/v1/audio/transcriptions/jobs/job_nope")]
        card = answers[0].json()["data"][0]
    assert card["description"] and card["profile"] == "production"
    for answer in answers:
        assert str(tmp_path) not in answer.text and "weights" not in answer.text, answer.text
