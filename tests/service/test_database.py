"""Pooled connections: a connection the database dropped while it sat idle is replaced,
not handed to a request. Migrations: a database is brought to its head revision, or the
reason it cannot be is one line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from shiftboss.services import db as db_module
from shiftboss.services.db import Database, NotAtHead
from tests.conftest import POSTGRES_DSN, fresh_database



@pytest.fixture
async def db_url(backend: str, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def,override]
    """Migrations are what these tests are about: an empty database, not the migrated copy."""
    async with fresh_database(backend, tmp_path) as url:
        yield url

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


async def test_a_revision_this_build_does_not_know_is_refused(db_url: str) -> None:
    database = Database(db_url)
    try:
        await database.upgrade("pools")
        async with database.connection() as conn:
            await conn.execute(text("update alembic_version_pools set version_num = '0099_from_the_future'"))
        again = Database(db_url)  # a newer build wrote it; this one starts
        try:
            with pytest.raises(NotAtHead, match=r"the pools database \(.+\) is at revision 0099_from_the_future, which this version"):
                await again.upgrade("pools")
            async with again.reading() as session:  # nothing was written
                version = (await session.execute(text("select version_num from alembic_version_pools"))).scalar_one()
            assert version == "0099_from_the_future"
        finally:
            await again.dispose()
    finally:
        await database.dispose()


async def test_an_installation_without_the_migration_scripts_is_refused(
    db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """What a wheel without the versions/ folders did: Alembic finds no revision, upgrades
    nothing, and the server answered every call with a missing table."""
    from importlib import resources

    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    source = resources.files("shiftboss.services.pools").joinpath("migrations")
    for name in ("env.py", "script.py.mako"):
        (migrations / name).write_text(source.joinpath(name).read_text())
    real = db_module.alembic_config

    def without_scripts(service: str):  # type: ignore[no-untyped-def]
        cfg = real(service)
        cfg.set_main_option("script_location", str(migrations))
        return cfg

    monkeypatch.setattr(db_module, "alembic_config", without_scripts)
    database = Database(db_url)
    try:
        with pytest.raises(NotAtHead, match="lacks the pools service's migration scripts .*; reinstall shiftboss"):
            await database.upgrade("pools")
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
