from __future__ import annotations

import pytest

from tests.app.jobs.databases import database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    with database(request.param, tmp_path) as url:
        yield url
