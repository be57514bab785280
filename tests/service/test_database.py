"""Pooled connections: a connection the database dropped while it sat idle is replaced,
not handed to a request."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from shiftboss.services import db as db_module
from shiftboss.services.db import Database
from tests.conftest import POSTGRES_DSN


async def test_an_idle_connection_the_server_dropped_is_replaced(backend: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has no server to drop connections")
    database = Database(db_url)
    try:
        async with database.connection() as conn:
            first = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            assert await admin.fetchval("select pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # it has been idle long enough
        async with database.connection() as conn:
            second = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await database.dispose()


async def test_the_sqlite_file_is_this_users_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    database = Database(f"sqlite+aiosqlite:///{home / 'shiftboss.db'}")
    try:
        async with database.connection() as conn:
            await conn.execute(text("create table t (x integer)"))
    finally:
        await database.dispose()
    assert (home.stat().st_mode & 0o777, (home / "shiftboss.db").stat().st_mode & 0o777) == (0o700, 0o600)
    # A file an older version made readable by others is closed up.
    older = tmp_path / "older.db"
    older.touch(mode=0o644)
    older.chmod(0o644)
    await Database(f"sqlite+aiosqlite:///{older}").dispose()
    assert older.stat().st_mode & 0o777 == 0o600
