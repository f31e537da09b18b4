"""The databases the job tests run on: an SQLite file, and PostgreSQL when MEGA_ASR_TEST_DATABASE_URL names
one (.ci/run starts Debian's server and sets it). With the variable set, every PostgreSQL test runs and an
unreachable server fails it; without it (a developer's machine) they skip and say how to run them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

ENV = "MEGA_ASR_TEST_DATABASE_URL"
SKIP_REASON = (f"{ENV} is not set: PostgreSQL tests need a server (scripts/start_test_postgres.sh starts one; "
               f"then export {ENV}=postgresql+asyncpg://mega_asr:mega_asr@127.0.0.1:5432/mega_asr_test)")


def postgres_url() -> str:
    url = os.environ.get(ENV, "")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty database on the test server for one test; dropped after."""
    base = postgres_url()
    name = "mega_asr_t_" + secrets.token_hex(6)
    asyncio.run(_admin(base, f"CREATE DATABASE {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextlib.contextmanager
def database(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        with fresh_postgres() as url:
            yield url
