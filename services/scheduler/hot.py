"""The statements of the dispatch path: new runs, leases, and workers' reports, each for a
whole batch at once (see batches.py). These run thousands of times a second under load, so
they have two forms with the same meaning:

- SQLAlchemy Core on the engine's connection (SQLite, and any other database);
- plain SQL on an asyncpg connection (PostgreSQL, see `Database.driver`), where a batch is
  one statement of arrays and a run's history line is written by the statement that
  changes the run. SQLAlchemy's asyncpg adapter spends more of the scheduler's CPU around
  a statement than asyncpg spends on it.

`transaction(db)` opens the one that fits the database. Every method keeps its
transaction: the caller's changes commit together or not at all.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import operator
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import JSON, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from shiftboss.services.db import Database
from shiftboss.services.scheduler import states
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, FlowRunRow, StateChangeRow
from shiftboss.services.scheduler.runs import add_history

_RUNS = FlowRunRow.__table__
_HISTORY = StateChangeRow.__table__
_DEPLOYMENTS = DeploymentRow.__table__


@dataclass(slots=True, eq=False)
class LiveRun:
    """What a state change reads and writes of a run, loaded without the ORM (see `lock_live`)."""

    seq: int
    id: str
    pool: str
    queue: str
    scheduled_start: datetime
    state: str
    message: str
    worker: str
    lease: int
    lease_expires: datetime | None
    exit_code: int | None
    started: datetime | None
    ended: datetime | None
    run_count: int
    retries: int
    retry_delay_seconds: float
    state_name: str


#: The columns a state change may write (see runs.record and engine.Scheduler.transition).
CHANGED = (
    "state", "message", "worker", "lease_expires", "exit_code", "started", "ended", "scheduled_start", "run_count", "state_name",
)
#: Every column of a new run but its key, which the database assigns.
INSERTED = [column.key for column in _RUNS.columns if column.key != "seq"]
#: The columns a Dispatch is built from (see dispatch.dispatch_message), with those the
#: dispatch's telemetry reads (scheduler/telemetry.py), and the key.
DISPATCHED = (
    "seq", "id", "name", "deployment", "pool", "queue", "entrypoint", "parameters", "job_configuration",
    "scheduled_start", "created", "state", "message", "worker", "lease", "traceparent",
)
#: A leased run as the lease returns it, on either database.
Leased = collections.namedtuple("Leased", DISPATCHED)  # type: ignore[misc]


def _order(rows: list[Any], keys: list[int]) -> list[Any]:
    order = {k: i for i, k in enumerate(keys)}
    return sorted(rows, key=lambda r: order[r.seq])


class CoreStatements:
    """On a SQLAlchemy connection (SQLite)."""

    _LOCK_LIVE = (
        select(*[_RUNS.c[name] for name in LiveRun.__slots__])
        .where(_RUNS.c.id.in_(bindparam("_ids", expanding=True)))
        .order_by(_RUNS.c.seq)
        .with_for_update()
    )
    _SAVE_LIVE = update(_RUNS).where(_RUNS.c.seq == bindparam("_seq")).values({n: bindparam(f"_{n}") for n in CHANGED})
    #: Keys come back matched by id, not in order: asking for the parameters' order makes
    #: SQLAlchemy insert one row per statement on SQLite (its RETURNING order is not guaranteed).
    _INSERT_RUNS = insert(_RUNS).returning(_RUNS.c.id, _RUNS.c.seq)
    _LEASE = (
        update(_RUNS)
        .where(_RUNS.c.seq.in_(bindparam("_keys", expanding=True)), _RUNS.c.state == states.SCHEDULED)
        .values(
            state=states.PENDING,
            message=bindparam("_message"),
            worker=bindparam("_worker"),
            lease=_RUNS.c.lease + 1,
            lease_expires=bindparam("_expires"),
            dispatched=bindparam("_now"),
        )
        .returning(*[_RUNS.c[name] for name in DISPATCHED])
    )
    _STAMPS = (
        select(_DEPLOYMENTS.c.id, _DEPLOYMENTS.c.updated)
        .where(_DEPLOYMENTS.c.id.in_(bindparam("_ids", expanding=True)))
        .with_for_update(read=True)
    )

    _MADE_WITH = select(_RUNS.c.idempotency_key, _RUNS.c.id, _RUNS.c.deployment).where(
        _RUNS.c.idempotency_key.in_(bindparam("_keys", expanding=True))
    )

    def __init__(self, connection: Any) -> None:
        self.db = connection

    async def lock_live(self, run_ids: set[str]) -> dict[str, LiveRun]:
        """The runs among these ids that exist, by id, locked for the transaction."""
        if not run_ids:
            return {}
        return {row[1]: LiveRun(*row) for row in await self.db.execute(self._LOCK_LIVE, {"_ids": sorted(run_ids)})}

    async def save_live(self, runs: list[LiveRun], history: list[dict[str, Any]]) -> None:
        """Write back what state changes did to these runs, and their lines of history."""
        if runs:
            await self.db.execute(self._SAVE_LIVE, [{"_seq": r.seq, **{f"_{k}": getattr(r, k) for k in CHANGED}} for r in runs])
        await add_history(self.db, history)

    async def insert_runs(self, runs: list[FlowRunDraft]) -> None:
        """New runs (every column set by the caller) and the first line of their histories.
        Each run learns its key."""
        if not runs:
            return
        values = [{key: getattr(run, key) for key in INSERTED} for run in runs]
        keys = {run_id: key for run_id, key in await self.db.execute(self._INSERT_RUNS, values)}
        for run in runs:
            run.seq = keys[run.id]
        await add_history(self.db, [{"run_seq": r.seq, "state": r.state, "at": r.created, "message": r.message} for r in runs])

    async def lease(self, keys: list[int], worker: str, now: datetime, lease_seconds: float) -> list[Any]:
        """Release the runs to a worker: PENDING, with a new fencing token and an ack deadline.

        One UPDATE checks and changes them all, so a run that left SCHEDULED meanwhile
        (cancelled, or taken by another replica) is not released; returns the released runs
        (the columns of a Dispatch, as `Leased`), in the order of `keys`."""
        if not keys:
            return []
        message = f"released to worker {worker}"
        expires = now + timedelta(seconds=lease_seconds)
        params = {"_keys": keys, "_message": message, "_worker": worker, "_expires": expires, "_now": now}
        rows = [Leased(*row) for row in await self.db.execute(self._LEASE, params)]
        if not rows:
            return []
        await add_history(self.db, [{"run_seq": r.seq, "state": states.PENDING, "at": now, "message": message} for r in rows])
        return _order(rows, keys)

    async def stamps(self, ids: set[str]) -> dict[str, datetime]:
        """When each of these deployments last changed, by id (share-locked where the
        database can, so none changes before the transaction commits)."""
        return {id_: updated for id_, updated in await self.db.execute(self._STAMPS, {"_ids": sorted(ids)})}

    async def made_with(self, keys: list[str]) -> dict[str, tuple[str, str]]:
        """The runs these idempotency keys made: key -> (run id, deployment name)."""
        if not keys:
            return {}
        return {key: (id_, deployment) for key, id_, deployment in await self.db.execute(self._MADE_WITH, {"_keys": keys})}


def _columns(names: Any) -> str:
    return ", ".join(names)


#: JSON columns of a run, sent as text and cast.
_JSON = {column.key for column in _RUNS.columns if isinstance(column.type, JSON)}
#: Each column's type as PostgreSQL names it, for the arrays a batch is sent as; without a
#: length, as a cast to VARCHAR(n) would cut a longer value short rather than refuse it.
_PG_TYPES = {
    c.key: "TEXT" if c.key in _JSON else re.sub(r"\(\d+\)", "", c.type.compile(dialect=postgresql.dialect()))
    for c in _RUNS.columns
}


def _unnest(names: Any, first: int = 1) -> str:
    return ", ".join(f"${i}::{_PG_TYPES[n]}[]" for i, n in enumerate(names, first))


def _history_insert(source: str) -> str:
    return f"INSERT INTO {_HISTORY.name} (run_seq, state, at, message) {source}"


def _history_from_arrays(first: int) -> str:
    """Lines of history sent as four arrays from parameter `first` on, kept in their order."""
    a, b, c, d = range(first, first + 4)
    return _history_insert(
        f"SELECT run_seq, state, at, message FROM unnest(${a}::INTEGER[], ${b}::VARCHAR[], ${c}::TIMESTAMPTZ[], ${d}::TEXT[]) "
        "WITH ORDINALITY AS h(run_seq, state, at, message, n) ORDER BY n"
    )


class PgStatements:
    """On an asyncpg connection (PostgreSQL): the same statements, a batch as arrays."""

    _LOCK_LIVE = (
        f"SELECT {_columns(LiveRun.__slots__)} FROM {_RUNS.name} WHERE id = ANY($1::VARCHAR[]) ORDER BY seq FOR UPDATE"
    )
    _SAVE_LIVE = (
        f"WITH saved AS (UPDATE {_RUNS.name} AS r SET {_columns(f'{n} = v.{n}' for n in CHANGED)} "
        f"FROM unnest({_unnest(('seq', *CHANGED))}) AS v(seq, {_columns(CHANGED)}) WHERE r.seq = v.seq) "
        + _history_from_arrays(len(CHANGED) + 2)
    )
    _ADD_HISTORY = _history_from_arrays(1)
    _LEASE = (
        f"WITH leased AS (UPDATE {_RUNS.name} SET state = '{states.PENDING}', message = $2, worker = $3, "
        "lease = lease + 1, lease_expires = $4, dispatched = $5 "
        f"WHERE seq = ANY($1::INTEGER[]) AND state = '{states.SCHEDULED}' RETURNING {_columns(DISPATCHED)}), "
        f"h AS ({_history_insert('SELECT seq, state, $5::TIMESTAMPTZ, $2::TEXT FROM leased ORDER BY seq')}) "
        f"SELECT {_columns(DISPATCHED)} FROM leased"
    )
    _STAMPS = f"SELECT id, updated FROM {_DEPLOYMENTS.name} WHERE id = ANY($1::VARCHAR[]) FOR SHARE"
    _MADE_WITH = f"SELECT idempotency_key, id, deployment FROM {_RUNS.name} WHERE idempotency_key = ANY($1::VARCHAR[])"

    def __init__(self, connection: Any) -> None:
        self.db = connection

    async def lock_live(self, run_ids: set[str]) -> dict[str, LiveRun]:
        if not run_ids:
            return {}
        return {row[1]: LiveRun(*row) for row in await self.db.fetch(self._LOCK_LIVE, sorted(run_ids))}

    async def save_live(self, runs: list[LiveRun], history: list[dict[str, Any]]) -> None:
        if not runs:
            await self._add_history(history)
            return
        columns = [[r.seq for r in runs], *([getattr(r, k) for r in runs] for k in CHANGED)]
        await self.db.execute(self._SAVE_LIVE, *columns, *_history_columns(history))

    async def _add_history(self, history: list[dict[str, Any]]) -> None:
        if history:
            await self.db.execute(self._ADD_HISTORY, *_history_columns(history))

    async def insert_runs(self, runs: list[FlowRunDraft]) -> None:
        if not runs:
            return
        varying, same = _split_columns(runs)
        statement = _insert_statement(tuple(k for k, _ in varying), tuple(k for k, _ in same))
        try:
            keys = dict(await self.db.fetch(statement, *(v for _, v in varying), *(v for _, v in same)))
        except asyncpg.IntegrityConstraintViolationError as exc:
            # As SQLAlchemy raises it on the other path, so callers catch one kind (a
            # schedule's slot taken by another replica).
            raise IntegrityError(statement, None, exc) from exc
        for run in runs:
            run.seq = keys[run.id]

    async def insert_fresh_runs(self, runs: list[FlowRunDraft], stamps: dict[str, datetime]) -> None:
        """insert_runs, as one statement that is a transaction of its own, of the runs whose
        deployment (`deployment_id`) was last updated at `stamps[deployment_id]`: it takes
        the deployments' rows FOR SHARE and inserts the runs of those not changed since, as
        `stamps` then `insert_runs` do in a transaction. A run not written keeps `seq` 0."""
        varying, same = _split_columns(runs)
        statement = _insert_statement(tuple(k for k, _ in varying), tuple(k for k, _ in same), fresh=True)
        ids, updated = zip(*stamps.items())
        try:
            keys = dict(await self.db.fetch(statement, *(v for _, v in varying), *(v for _, v in same), list(ids), list(updated)))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(statement, None, exc) from exc
        for run in runs:
            run.seq = keys.get(run.id, 0)

    async def lease(self, keys: list[int], worker: str, now: datetime, lease_seconds: float) -> list[Any]:
        if not keys:
            return []
        message = f"released to worker {worker}"
        expires = now + timedelta(seconds=lease_seconds)
        rows = [Leased(*row) for row in await self.db.fetch(self._LEASE, keys, message, worker, expires, now)]
        return _order(rows, keys)

    async def stamps(self, ids: set[str]) -> dict[str, datetime]:
        return dict(await self.db.fetch(self._STAMPS, sorted(ids)))

    async def made_with(self, keys: list[str]) -> dict[str, tuple[str, str]]:
        if not keys:
            return {}
        return {key: (id_, deployment) for key, id_, deployment in await self.db.fetch(self._MADE_WITH, keys)}


#: Columns sent as arrays whatever their values: the id, which tells the runs apart.
_PER_RUN = frozenset({"id"})


def _split_columns(runs: list[FlowRunDraft]) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """New runs' columns as sent: (column, values) of those that differ between runs, and
    (column, value) of those every run shares. A shared column is sent once, not as an
    array: most are, for new runs (their state, their empty lease...), and an array costs
    asyncpg Python work per element. A document shared by runs is encoded once."""
    varying, same = [], []
    count = len(runs)
    # Every run's columns in one call each, turned into one tuple per column.
    for key, values in zip(INSERTED, zip(*map(_INSERTED_VALUES, runs))):
        first = values[0]
        if key not in _PER_RUN and (count == 1 or values.count(first) == count):
            same.append((key, _json_text(first) if key in _JSON else first))
        else:
            varying.append((key, [_json_text(v) for v in values] if key in _JSON else list(values)))
    return varying, same


#: A new run's columns, in INSERTED's order.
_INSERTED_VALUES = operator.attrgetter(*INSERTED)
#: JSON texts of the documents new runs share, by identity (a deployment's parameters, a
#: rendered job configuration: see Scheduler.new_draft, which never changes one once made),
#: each held with its document so that its id stays its own; the oldest go first.
_TEXTS: collections.OrderedDict[int, tuple[Any, str]] = collections.OrderedDict()
_MOST_TEXTS = 1024


def _json_text(document: Any) -> str:
    """The JSON text of a document, encoded once however many runs and batches share it."""
    if not document:
        return "{}" if isinstance(document, dict) else json.dumps(document)
    kept = _TEXTS.get(id(document))
    if kept is not None and kept[0] is document:
        return kept[1]
    text = json.dumps(document)
    _TEXTS[id(document)] = (document, text)
    if len(_TEXTS) > _MOST_TEXTS:
        _TEXTS.popitem(last=False)
    return text


@functools.lru_cache(maxsize=64)
def _insert_statement(varying: tuple[str, ...], same: tuple[str, ...], fresh: bool = False) -> str:
    """New runs, and the first line of their histories: `varying` columns sent as arrays
    (kept in their order), then `same` columns as one value each. `fresh`: then two arrays,
    deployments' ids and `updated` stamps; only runs of a deployment whose row still has its
    stamp are inserted, its row held FOR SHARE until commit (see insert_fresh_runs)."""
    first = len(varying) + 1
    values = {n: f"v.{n}" for n in varying} | {n: f"${i}::{_PG_TYPES[n]}" for i, n in enumerate(same, first)}
    checked, where = "", ""
    if fresh:
        ids, stamps = first + len(same), first + len(same) + 1
        checked = (
            f"fresh AS (SELECT d.id FROM {_DEPLOYMENTS.name} AS d JOIN unnest(${ids}::VARCHAR[], ${stamps}::TIMESTAMPTZ[]) "
            "AS s(id, updated) ON d.id = s.id AND d.updated = s.updated FOR SHARE OF d), "
        )
        where = f"WHERE {values['deployment_id']} IN (SELECT id FROM fresh) "
    return (
        f"WITH {checked}new AS (INSERT INTO {_RUNS.name} ({_columns(INSERTED)}) "
        f"SELECT {_columns(f'{values[n]}::JSON' if n in _JSON else values[n] for n in INSERTED)} "
        f"FROM unnest({_unnest(varying)}) WITH ORDINALITY AS v({_columns(varying)}, n) {where}ORDER BY n "
        "RETURNING seq, id, state, created, message), "
        f"h AS ({_history_insert('SELECT seq, state, created, message FROM new ORDER BY seq')}) "
        "SELECT id, seq FROM new"
    )


def _history_columns(history: list[dict[str, Any]]) -> list[list[Any]]:
    return [[line[k] for line in history] for k in ("run_seq", "state", "at", "message")]


Statements = CoreStatements | PgStatements


@contextlib.asynccontextmanager
async def one_statement(db: Database) -> AsyncIterator[PgStatements]:
    """PostgreSQL only: statements each a transaction of its own (no BEGIN, no COMMIT)."""
    async with db.driver(transaction=False) as connection:
        yield PgStatements(connection)


@contextlib.asynccontextmanager
async def transaction(db: Database, fence: Any = None) -> AsyncIterator[Statements]:
    """The dispatch path's statements in one transaction on this database. With a `fence`
    (ownership.Fence: several replicas on PostgreSQL), the transaction first checks that
    this replica still owns the pools it writes, and holds that until it commits."""
    if db.is_sqlite:
        async with db.connection() as connection:
            yield CoreStatements(connection)
    else:
        async with db.driver() as connection:
            if fence is not None:
                await fence.check(connection)
            yield PgStatements(connection)
