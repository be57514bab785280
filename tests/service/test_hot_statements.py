"""The dispatch path's statements (services/scheduler/hot.py) on a real database: SQLAlchemy
Core on SQLite, plain SQL on asyncpg on PostgreSQL. Both must leave the same rows and
return the same things, and neither may write half a batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shiftboss.services.db import Database, open_database, release_database
from tests.conftest import POSTGRES_DSN
from shiftboss.services.scheduler import hot, runs, states
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, FlowRunRow, StateChangeRow, new_id

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = open_database(db_url)
    await database.upgrade("scheduler")
    try:
        yield database
    finally:
        await release_database(database)


def draft(**changes: object) -> FlowRunDraft:
    fields = dict(
        id=new_id(), name="calm-otter", deployment_id=None, deployment="d", pool="p", queue="default",
        entrypoint="flows/x.py:x", parameters={"n": 1, "nested": {"ok": [True, None]}}, job_variables={},
        job_configuration={"command": "python -m x"}, scheduled_start=T0, state=states.SCHEDULED, created=T0,
        message="created",
    )
    fields.update(changes)
    return FlowRunDraft(**fields)  # type: ignore[arg-type]


async def history(db: Database, seq: int) -> list[tuple[str, str]]:
    async with db.reading() as session:
        rows = await session.execute(
            select(StateChangeRow.state, StateChangeRow.message).where(StateChangeRow.run_seq == seq).order_by(StateChangeRow.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_a_run_from_insert_to_finish(db: Database) -> None:
    first, second = draft(), draft(slot="hourly@12")
    async with hot.transaction(db) as statements:
        await statements.insert_runs([first, second])
    assert first.seq and second.seq and first.seq != second.seq

    async with hot.transaction(db) as statements:
        leased = await statements.lease([second.seq, first.seq], "pool/w1", T0, 30)
    assert [run.id for run in leased] == [second.id, first.id]  # in the order asked for
    run = leased[1]
    assert (run.state, run.worker, run.lease, run.message) == (states.PENDING, "pool/w1", 1, "released to worker pool/w1")
    assert run.parameters == {"n": 1, "nested": {"ok": [True, None]}}
    assert run.job_configuration == {"command": "python -m x"}
    assert runs.as_utc(run.scheduled_start) == T0 and runs.as_utc(run.created) == T0  # SQLite keeps no zone

    # Started and finished in one batch: both lines of history, in that order.
    async with hot.transaction(db) as statements:
        live = await statements.lock_live({first.id, "no-such-run"})
        assert set(live) == {first.id}
        changed, lines = live[first.id], []
        runs.record(lines, changed, states.RUNNING, T0 + timedelta(seconds=1), "started")
        changed.started = T0 + timedelta(seconds=1)
        runs.record(lines, changed, states.COMPLETED, T0 + timedelta(seconds=2), "done")
        changed.exit_code = 0
        await statements.save_live([changed], lines)

    async with db.reading() as session:
        row = (await session.execute(select(FlowRunRow).where(FlowRunRow.id == first.id))).scalar_one()
    assert (row.state, row.exit_code, row.lease, row.worker) == (states.COMPLETED, 0, 1, "pool/w1")
    assert runs.as_utc(row.ended) == T0 + timedelta(seconds=2)
    assert await history(db, first.seq) == [
        ("SCHEDULED", "created"), ("PENDING", "released to worker pool/w1"), ("RUNNING", "started"), ("COMPLETED", "done"),
    ]


async def test_a_lease_passes_over_a_run_that_left_scheduled(db: Database) -> None:
    waiting, cancelled = draft(), draft(state=states.CANCELLED)
    async with hot.transaction(db) as statements:
        await statements.insert_runs([waiting, cancelled])
        leased = await statements.lease([cancelled.seq, waiting.seq], "pool/w1", T0, 30)
    assert [run.id for run in leased] == [waiting.id]
    assert await history(db, cancelled.seq) == [("CANCELLED", "created")]


async def test_a_taken_slot_refuses_the_whole_batch(db: Database) -> None:
    async with hot.transaction(db) as statements:
        await statements.insert_runs([draft(slot="daily@0")])
    fresh = draft()
    with pytest.raises(IntegrityError):
        async with hot.transaction(db) as statements:
            await statements.insert_runs([fresh, draft(slot="daily@0")])
    async with db.reading() as session:
        assert (await session.execute(select(FlowRunRow.id).where(FlowRunRow.id == fresh.id))).first() is None
        assert len((await session.execute(select(StateChangeRow.id))).all()) == 1


async def test_a_value_too_long_is_refused_or_kept_whole_never_cut(db: Database) -> None:
    long = draft(name="x" * 300)
    try:
        async with hot.transaction(db) as statements:
            await statements.insert_runs([long])
    except Exception:
        assert not db.is_sqlite  # PostgreSQL refuses it; SQLite keeps any length
        return
    async with db.reading() as session:
        assert (await session.execute(select(FlowRunRow.name).where(FlowRunRow.id == long.id))).scalar_one() == "x" * 300


async def test_deployment_stamps(db: Database) -> None:
    async with db.transaction() as session:
        session.add(DeploymentRow(id="d1", name="one", entrypoint="f.py:f", pool="p", queue="default", updated=T0))
    async with hot.transaction(db) as statements:
        stamps = await statements.stamps({"d1", "gone"})
    assert {key: runs.as_utc(value) for key, value in stamps.items()} == {"d1": T0}


async def test_runs_of_a_changed_deployment_are_not_inserted_by_the_one_statement_insert(db: Database) -> None:
    """PostgreSQL's creation path in one statement: the runs of a deployment whose stamp is
    as they were made from are written with their history, the others not at all; and the
    deployment's row is held FOR SHARE until that statement ends, as the two-statement
    transaction holds it."""
    if db.is_sqlite:
        pytest.skip("SQLite writes a batch's runs in a transaction of two statements")
    async with db.transaction() as session:
        session.add(DeploymentRow(id="d1", name="one", entrypoint="f.py:f", pool="p", queue="default", updated=T0))
        session.add(DeploymentRow(id="d2", name="two", entrypoint="f.py:f", pool="p", queue="default", updated=T0))
    kept = [draft(deployment_id="d1", deployment="one"), draft(deployment_id="d1", deployment="one")]
    changed = draft(deployment_id="d2", deployment="two")
    async with hot.one_statement(db) as statements:
        await statements.insert_fresh_runs([kept[0], changed, kept[1]], {"d1": T0, "d2": T0 - timedelta(seconds=1)})
    assert kept[0].seq and kept[1].seq and changed.seq == 0
    async with db.reading() as session:
        written = (await session.execute(select(FlowRunRow.id).order_by(FlowRunRow.seq))).scalars().all()
    assert written == [kept[0].id, kept[1].id]
    assert await history(db, kept[1].seq) == [(states.SCHEDULED, "created")]

    # A deployment being changed (its row locked by the change) holds the insert until the
    # change commits, and then the insert sees the new stamp: the run is not written.
    racing = draft(deployment_id="d1", deployment="one")
    async with db.driver() as changing:
        await changing.execute("UPDATE deployments SET updated = $1 WHERE id = 'd1'", T0 + timedelta(seconds=1))
        inserting = asyncio.ensure_future(_insert_fresh(db, racing, {"d1": T0}))
        async with asyncio.timeout(10), db.driver(transaction=False) as looking:  # until the insert waits on the row's lock
            while not await looking.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH fresh AS%'"
            ):
                assert not inserting.done(), "the insert did not wait for the change"
                await asyncio.sleep(0.01)
    await asyncio.wait_for(inserting, 10)
    assert racing.seq == 0


async def _insert_fresh(db: Database, run: FlowRunDraft, stamps: dict[str, datetime]) -> None:
    async with hot.one_statement(db) as statements:
        await statements.insert_fresh_runs([run], stamps)


async def test_connections_the_server_dropped_are_made_again(db: Database) -> None:
    """As after a PostgreSQL restart: the server ends every connection of the scheduler's
    pool while they sit idle. At most one transaction fails on that; the next works."""
    if db.is_sqlite:
        pytest.skip("SQLite has no server to drop connections")
    holding, inside = 8, asyncio.Event()
    pids: list[int] = []

    async def hold() -> None:
        async with db.driver() as connection:
            pids.append(await connection.fetchval("SELECT pg_backend_pid()"))
            if len(pids) == holding:
                inside.set()
            await inside.wait()  # all open at once, so the pool holds as many

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(holding))), 10)
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        assert await admin.fetchval("SELECT count(*) FROM unnest($1::INTEGER[]) AS p WHERE pg_terminate_backend(p)", pids) == holding
    finally:
        await admin.close()
    failures = 0
    for _ in range(holding):
        try:
            async with hot.transaction(db) as statements:
                await statements.insert_runs([draft()])
            break
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, OSError):
            failures += 1
    assert failures <= 1
    async with db.driver() as connection:
        assert await connection.fetchval("SELECT count(*) FROM flow_runs") == 1


async def test_a_driver_connection_comes_back_as_it_was_lent(db: Database) -> None:
    """The pool hands a connection back out without asyncpg's reset query: what one
    transaction set (a local setting, a lock, a write it failed in) is gone for the next,
    on the same connection."""
    if db.is_sqlite:
        pytest.skip("the asyncpg driver is PostgreSQL's")
    async with db.driver() as connection:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        await connection.execute("SET LOCAL lock_timeout = '123ms'")
        await connection.execute("SELECT set_config('idle_in_transaction_session_timeout', '4567', true)")
        await connection.execute("LOCK TABLE flow_runs IN SHARE MODE")
    with pytest.raises(IntegrityError):
        async with db.driver() as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == pid
            one = draft()
            await hot.PgStatements(connection).insert_runs([one])
            await hot.PgStatements(connection).insert_runs([draft(id=one.id)])
    async with db.driver() as connection:
        assert await connection.fetchval("SELECT pg_backend_pid()") == pid  # one connection, reused
        assert await connection.fetchval("SHOW lock_timeout") != "123ms"
        assert await connection.fetchval("SHOW idle_in_transaction_session_timeout") != "4567ms"
        assert await connection.fetchval("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'ShareLock'") == 0
        assert await connection.fetchval("SELECT count(*) FROM flow_runs") == 0  # the failed batch left nothing


async def test_a_lease_is_planned_for_its_keys_however_the_table_grew(backend: str, db: Database) -> None:
    """PostgreSQL keeps the generic plan of a prepared statement once it has one; made while
    the runs table was small, it scans every run however large the table grows. Each lease
    here is planned for its own keys: a run leased after the table grew is found by its key."""
    if backend != "postgres":
        pytest.skip("SQLite plans each statement anew")
    async with hot.transaction(db) as statements:
        for _ in range(8):  # more than the five custom plans before PostgreSQL weighs a generic one
            run = draft()
            await statements.insert_runs([run])
            assert [r.id for r in await statements.lease([run.seq], "pool/w1", T0, 30)] == [run.id]
        many = [draft() for _ in range(2_000)]
        await statements.insert_runs(many)
        assert [r.id for r in await statements.lease([many[-1].seq], "pool/w1", T0, 30)] == [many[-1].id]
        assert isinstance(statements, hot.PgStatements)
        generic, custom = await statements.db.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE 'WITH leased AS%'"
        )
    assert (generic, custom) == (0, 9)
