"""Shared fixtures: fresh databases (SQLite file or a new PostgreSQL database per test),
an in-process mesh on a loopback port, and clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from shiftboss.client import AsyncClient, Client
from shiftboss.services.mesh import Mesh
from shiftboss.services.scheduler.engine import Scheduler
from shiftboss.settings import Settings, load_settings

POSTGRES_DSN = os.environ.get("SHIFTBOSS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="Databases the service tests run on (make test: both).",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--db")
        backends = ["sqlite", "postgres"] if choice == "both" else [choice]
        metafunc.parametrize("backend", backends, indirect=False)


async def create_postgres_database(template: str | None = None) -> str:
    """A new database, empty or a copy of `template` (which no one may be connected to)."""
    name = f"shiftboss_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return name


#: Services with tables of their own, each migrated into the template.
MIGRATED = ("keys", "pools", "heartbeats", "scheduler")


@pytest.fixture(scope="session")
def migrated_template() -> Iterator[str]:
    """A PostgreSQL database every service's migrations have run on, made once a session:
    each test's database is a copy (CREATE DATABASE ... TEMPLATE, ~0.1 s), not migrated
    again from nothing (~0.6 s of Alembic per test). Tests of migrations take an empty one."""
    from shiftboss.services.db import open_database, release_database

    async def make() -> str:
        name = await create_postgres_database()
        database = open_database(postgres_url(name))
        try:
            for service in MIGRATED:
                await database.upgrade(service)
        finally:
            await release_database(database)
        return name

    # Asked for from inside a test's event loop: made on a thread of its own, once.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        name = thread.submit(lambda: asyncio.run(make())).result()
    try:
        yield name
    finally:
        asyncio.run(drop_postgres_database(name))


async def drop_postgres_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def postgres_url(name: str) -> str:
    base = POSTGRES_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path, template: str | None = None) -> AsyncIterator[str]:
    """A database for one test, dropped afterwards: a new SQLite file, or a new PostgreSQL
    database (a copy of `template` when given)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shiftboss.db'}"
        return
    name = await create_postgres_database(template)
    try:
        yield postgres_url(name)
    finally:
        await drop_postgres_database(name)


@pytest.fixture
async def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database for one test, dropped afterwards; on PostgreSQL already migrated
    (see migrated_template), as a server leaves it on its first start."""
    template = request.getfixturevalue("migrated_template") if backend == "postgres" else None
    async with fresh_database(backend, tmp_path, template) as url:
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(environ={"SHIFTBOSS_HOME": str(tmp_path / "home")}, database_url=db_url)


@contextlib.asynccontextmanager
async def running_mesh(settings: Settings) -> AsyncIterator[Mesh]:
    """Every service in this process on a free loopback port, its api_address set to it;
    stopped at the end."""
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1"))
    port = await mesh.start()
    mesh.settings = mesh.settings.replace(api_address=f"127.0.0.1:{port}")
    mesh.peers.settings = mesh.settings
    try:
        yield mesh
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


def scheduler(mesh: Mesh) -> Scheduler:
    """The scheduler's engine in a running mesh: its admission state, dispatcher, ownership
    and database, for tests that look below the gRPC surface."""
    return next(s for s in mesh.services if s.name == "scheduler").engine  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
async def mesh(settings: Settings) -> AsyncIterator[Mesh]:
    """Every service in this process on a free loopback port."""
    async with running_mesh(settings) as started:
        yield started


async def close_abandoned_connections() -> None:
    """Each test has its own event loop. A database connection abandoned by a task that was
    cancelled mid-statement is closed by the garbage collector on whatever loop runs then;
    in a later test's loop its close would wait on a thread of a loop that is gone. Collect
    here, while this test's loop runs, and let those closes finish."""
    gc.collect()
    closing = [t for t in asyncio.all_tasks() if "_terminate_graceful_close" in repr(t.get_coro())]
    if closing:
        await asyncio.wait(closing, timeout=5)


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(f"127.0.0.1:{mesh.port}", timeout=10) as client:
        yield client


@pytest.fixture
def sync_client(mesh: Mesh) -> Iterator[Client]:
    with Client(f"127.0.0.1:{mesh.port}", timeout=10) as client:
        yield client
