from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_job_store(tmp_path_factory):
    """Every service a test starts keeps its jobs in a store of this test session (not the developer's
    ~/.cache/mega-asr/jobs.sqlite3); tests of the job store pass their own database URL."""
    if "MEGA_ASR_DATABASE_URL" in os.environ:
        yield
        return
    os.environ["MEGA_ASR_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('jobs') / 'jobs.sqlite3'}"
    yield
    os.environ.pop("MEGA_ASR_DATABASE_URL", None)
