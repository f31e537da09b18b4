"""Schema migrations at start-up (Alembic, app/jobs/migrations), safe when several replicas start at once:
on PostgreSQL the upgrade runs under a session advisory lock, so one replica migrates and the others wait,
then find the schema current. On SQLite (DDL is not transactional there) processes opening the same file
take an exclusive lock on `<file>.migrate.lock` around the upgrade instead."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x6D656761_6A6F6273 & 0x7FFFFFFFFFFFFFFF  # "megajobs": one advisory lock id for the whole schema
# Alembic keeps its running context in module globals: one upgrade at a time per process (per event loop).
_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration."""
    postgres = engine.dialect.name == "postgresql"
    lock = _IN_PROCESS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, _sqlite_file_lock(engine), engine.connect() as conn:
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade_to_head)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                await conn.commit()


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    handle = await asyncio.to_thread(open, f"{database}.migrate.lock", "a+b")
    try:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)  # waits for another process's upgrade
        yield
    finally:
        handle.close()  # closing the file releases the lock


def _upgrade_to_head(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
