"""Database access shared by the services: engines, transactions, migrations.

Each service owns its tables (its own metadata and Alembic history, with its own
version table), so a service can move to its own database by URL alone.

SQLite is the embedded default. It allows one writer at a time; rather than let
concurrent requests collide on "database is locked", writes of one process are
serialised by an asyncio lock and the file runs in WAL mode so reads never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

__all__ = [
    "Database",
    "DatabaseInUse",
    "NotAtHead",
    "has_migrations",
    "lock_sqlite_for_one_server",
    "open_database",
    "release_database",
    "run_migrations_online",
]


class NotAtHead(Exception):
    """A service's database is not, and cannot be brought, to the revision this build knows
    as its head. The message is one line for the operator."""


class DatabaseInUse(OSError):
    """Another server process already schedules on this SQLite file. The message is one
    line for the operator."""


def lock_sqlite_for_one_server(url: str) -> Any:
    """SQLite serves one scheduler at a time: an exclusive lock on a file next to the
    database (`<database>.server.lock`, holding the pid of the server that has it), held
    for as long as the returned file stays open; the lock goes with the process however it
    ends (kill -9 too). DatabaseInUse when another process holds it. None for any other
    database (PostgreSQL runs several replicas, see scheduler/ownership.py) and for an
    in-memory one."""
    import fcntl

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    database = Path(parsed.database).resolve()
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = database.with_name(database.name + ".server.lock")
    handle = open(path, "a+")  # noqa: SIM115 - kept open while the server runs
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise DatabaseInUse(
            f"another shiftboss server ({who}) is running on the SQLite database {database}: SQLite serves one "
            "server at a time; stop that one, or give every server the same PostgreSQL database "
            "(SHIFTBOSS_DATABASE_URL) to run several"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def naming() -> MetaData:
    return MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Base(DeclarativeBase):
    """Per-service bases subclass this with their own metadata."""

    __abstract__ = True


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


#: A pooled connection idle for longer than this is pinged before it is used again.
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a connection that sat in the pool for a while before handing it out, so one the
    server dropped (a restart, an idle timeout) is replaced rather than failing a request.

    The pool's own pre-ping checks at every checkout: with asyncpg that is BEGIN, a query and
    ROLLBACK, three round trips per transaction, a large part of a busy scheduler's CPU. A
    connection back from use a moment ago was working then; only idle ones are checked."""
    dialect = engine.dialect

    def stamp(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards it and hands out a new connection
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine.sync_engine, "connect", stamp)
    event.listen(engine.sync_engine, "checkin", stamp)
    event.listen(engine.sync_engine, "checkout", check)


def _private_file(path: Path) -> None:
    """The SQLite file readable by this user alone (0600; SQLite gives its -wal and -shm
    files the same mode), in a folder made 0700 when it has to be made: they hold every
    key's hash and every run's parameters."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if os.stat(path).st_mode & 0o077:  # made by an older version, or by hand
        with contextlib.suppress(PermissionError):  # not ours to change
            os.chmod(path, 0o600)


async def _kept_as_is(_connection: Any) -> None:
    """A driver connection back in its pool needs no reset: asyncpg's default (unlock
    advisory locks, close cursors, UNLISTEN, RESET ALL) is a round trip of its own, one more
    per transaction of the dispatch path, to undo what nothing here does. Every use is one
    transaction (`Database.driver`), rolled back by the pool if it was left open, whose
    settings are `SET LOCAL` or `set_config(..., true)`; notices are heard on a connection
    of their own (notify.py)."""


class Database:
    """One engine and its sessions; `transaction()` is one request's unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                _private_file(Path(parsed.database))
            self.engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_size=10, max_overflow=20)
            _ping_when_idle(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._users = 0
        self._driver_pool: Any = None
        self._driver_opening: asyncio.Lock | None = None
        #: Services whose tables this engine has brought to their head revision.
        self._at_head: set[str] = set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            async with self.sessions.begin() as session:
                yield session

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection in one transaction, for Core statements where no ORM object is
        needed (the dispatch path): the same commit and rollback as `transaction()`,
        without a session's unit of work."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            async with self.engine.begin() as connection:
                yield connection

    @contextlib.asynccontextmanager
    async def driver(self, transaction: bool = True) -> AsyncIterator[Any]:
        """PostgreSQL only: an asyncpg connection in one transaction, from a pool of its own,
        for the few statements a busy scheduler runs thousands of times a second. SQLAlchemy's
        adapter around asyncpg costs more Python per statement than the statement itself;
        here a statement is one call. JSON columns read and write as Python objects.
        `transaction=False`: no BEGIN and COMMIT around it, for one statement that is a
        transaction of its own (two round trips fewer)."""
        import asyncpg

        pool = self._driver_pool or await self._open_driver_pool()
        try:
            async with pool.acquire() as connection:
                if not transaction:
                    yield connection
                    return
                async with connection.transaction():
                    yield connection
        except (
            asyncpg.PostgresConnectionError,
            asyncpg.OperatorInterventionError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,  # what a dropped idle connection may raise at BEGIN
            OSError,
        ):
            # The server closed this connection (a restart, an administrator): the pool's
            # idle ones went with it. Have them all made again on their next use, so the
            # writes retried next do not meet one dead connection after another.
            await pool.expire_connections()
            raise

    async def _open_driver_pool(self) -> Any:
        import asyncpg

        if self._driver_opening is None:
            self._driver_opening = asyncio.Lock()
        async with self._driver_opening:
            if self._driver_pool is None:
                url = make_url(self.url).set(drivername="postgresql")

                async def setup(connection: Any) -> None:
                    await connection.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

                # Each statement planned for its own keys and the table as it is now. The
                # statements are prepared once per connection, and PostgreSQL keeps the generic
                # plan it made while the table was small: a scan of every run (no index is worth
                # it for a few rows), reused at 40,000 rows until the table is next analyzed (a
                # lease of 500 runs took 10 ms instead of 0.6; a batch of reports 4 instead of
                # 0.1). Planning costs some 0.1 ms a statement, and a statement serves a batch.
                self._driver_pool = await asyncpg.create_pool(
                    url.render_as_string(hide_password=False), min_size=1, max_size=10, init=setup, reset=_kept_as_is,
                    server_settings={"plan_cache_mode": "force_custom_plan"},
                )
        return self._driver_pool

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only, all of its statements seeing one snapshot: a run read
        with its history must not show the history of a change the run's row does not show
        yet (a watcher would wait for a change it was already told of)."""
        async with self.sessions() as session:
            if self.is_sqlite:
                # pysqlite begins a transaction only before a write; WAL gives a deferred one
                # its snapshot at its first read. Closing the session rolls it back.
                await session.execute(text("BEGIN"))
            else:
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    async def upgrade(self, service: str) -> None:
        """Apply the service's Alembic migrations up to head, once per engine; NotAtHead when
        the database does not end up there."""
        if service in self._at_head:
            return
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_sync, service, make_url(self.url).render_as_string(hide_password=True))
        self._at_head.add(service)

    async def dispose(self) -> None:
        if self._driver_pool is not None:
            pool, self._driver_pool = self._driver_pool, None
            await pool.close()
        await self.engine.dispose()


def alembic_config(service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"shiftboss.services.{service}:migrations")
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


def has_migrations(service: str) -> bool:
    """Whether the service keeps tables (and so an Alembic history)."""
    from importlib import resources

    try:
        return resources.files(f"shiftboss.services.{service}").joinpath("migrations").is_dir()
    except ModuleNotFoundError:
        return False


def _revisions(connection, service: str) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    context = MigrationContext.configure(connection, opts={"version_table": f"alembic_version_{service}"})
    return context.get_current_heads()


def _upgrade_sync(connection, service: str, shown_url: str) -> None:  # type: ignore[no-untyped-def]
    """Upgrade to head, refusing first what an upgrade cannot fix: a database at a revision
    this build does not know (written by a newer shiftboss), or a build without its scripts."""
    cfg = alembic_config(service)
    cfg.attributes["connection"] = connection
    script = ScriptDirectory.from_config(cfg)
    heads = set(script.get_heads())
    where = f"the {service} database ({shown_url})"
    if not heads:
        raise NotAtHead(
            f"{where} cannot be set up: this installation of shiftboss lacks the {service} service's migration scripts "
            f"({script.versions}); reinstall shiftboss"
        )
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [revision for revision in _revisions(connection, service) if revision not in known]
    if unknown:
        raise NotAtHead(
            f"{where} is at revision {', '.join(unknown)}, which this version of shiftboss does not know; upgrade shiftboss, "
            f"or point SHIFTBOSS_DATABASE_URL (or SHIFTBOSS_{service.upper()}_DATABASE_URL) at another database"
        )
    try:
        command.upgrade(cfg, "head")
    except CommandError as exc:
        raise NotAtHead(f"{where} cannot be upgraded: {exc}") from None
    reached = set(_revisions(connection, service))
    if reached != heads:
        raise NotAtHead(
            f"{where} is at revision {', '.join(sorted(reached)) or 'none'} after upgrading, not {', '.join(sorted(heads))}"
        )


def run_migrations_online(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py: run on the connection handed in."""
    from alembic import context

    config = context.config
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_OPEN: dict[str, Database] = {}


def open_database(url: str) -> Database:
    """The process-wide Database for a URL: services on one SQLite file share one writer lock."""
    db = _OPEN.get(url)
    if db is None:
        db = _OPEN[url] = Database(url)
    db._users += 1
    return db


async def release_database(db: Database) -> None:
    """Give back a Database from open_database; the last user disposes of its engine."""
    db._users -= 1
    if db._users <= 0:
        _OPEN.pop(db.url, None)
        await db.dispose()
