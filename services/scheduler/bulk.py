"""Many flow runs in one call (CreateFlowRuns), all or none.

Each item is checked and made as CreateFlowRun makes its run (`check_new_run`, `run_shape`,
`new_draft`; the runs of one deployment, queue and set of job variables share one check
and one rendering), and a refusal names the item by its index (`runs[3].deployment: ...`).
Then one transaction writes them all, a statement per 2,000 runs (hot.py: on PostgreSQL,
arrays; the next chunk is made while the database writes one), checking the `updated`
stamps of their deployments as a batch of single creates does: a run made from a
deployment that changed meanwhile makes the whole call start again from the deployments
as they now are. Committed, the runs enter the core together, before the next admission
pass; runs of a pool another replica dispatches are told to it in the same transaction,
as for one run.

Idempotency is per run: an item whose key made a run already (this call, retried) answers
with that run's id and the others are made. Two items with one key are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import IntegrityError

from shiftboss._wire import from_struct
from shiftboss.errors import Aborted, FailedPrecondition, InvalidArgument, ShiftbossError
from shiftboss.services.scheduler import hot, retries
from shiftboss.services.scheduler.creation import into_core
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, RunShape, now_utc
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

#: Most runs one CreateFlowRuns makes.
MAX_RUNS = 10_000
#: Times the runs are made again when a deployment changed before they were written.
MAX_ATTEMPTS = 5
#: Runs a statement inserts: the next chunk is made while the database writes one.
CHUNK = 2_000


@dataclass(slots=True)
class _Item:
    deployment: str
    queue: str
    parameters: dict[str, Any]
    run_variables: dict[str, Any]
    start: datetime | None
    key: str
    retry_policy: tuple[int | None, float | None]


class _Stale(Exception):
    """Deployments that changed between the making of the runs and their insert."""

    def __init__(self, rows: list[DeploymentRow]) -> None:
        super().__init__(", ".join(row.name for row in rows))
        self.rows = rows


def at(index: int, exc: ShiftbossError) -> ShiftbossError:
    """The same refusal, naming the item: `runs[3].queue: ...`."""
    where = f"runs[{index}]"
    field = exc.field
    if field and exc.message.startswith((f"{field}:", f"{field}.")):
        message = f"{where}.{exc.message}"
    elif field:
        message = f"{where}.{field}: {exc.message}"
    else:
        message = f"{where}: {exc.message}"
    return type(exc)(message, field=f"{where}.{field}" if field else where)


def _checked(service: Scheduler, index: int, request: scheduler_pb2.CreateFlowRunRequest) -> _Item:
    try:
        start = service.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run_variables = service.check_new_run(request.deployment, request.idempotency_key, from_struct(request.job_variables))
        policy = retries.requested(request)
    except ShiftbossError as exc:
        raise at(index, exc) from None
    parameters = from_struct(request.parameters) if request.HasField("parameters") else {}
    return _Item(request.deployment, request.queue, parameters, run_variables, start, request.idempotency_key, policy)


async def create_runs(
    service: Scheduler, requests: Sequence[scheduler_pb2.CreateFlowRunRequest]
) -> tuple[list[str], int]:
    """The runs' ids in the requests' order, and how many this call made."""
    if not requests:
        raise InvalidArgument("runs: give at least one run", field="runs")
    if len(requests) > MAX_RUNS:
        raise InvalidArgument(f"runs: at most {MAX_RUNS:,} per request, got {len(requests):,}", field="runs")
    items = [_checked(service, i, request) for i, request in enumerate(requests)]
    keyed: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.key:
            first = keyed.setdefault(item.key, i)
            if first != i:
                raise InvalidArgument(
                    f"runs[{i}].idempotency_key: {item.key!r} is also the key of runs[{first}]", field=f"runs[{i}].idempotency_key"
                )
    for _ in range(MAX_ATTEMPTS):
        ids = await _made_before(service, items, keyed)
        todo = [i for i, run_id in enumerate(ids) if run_id is None]
        if not todo:
            return cast(list[str], ids), 0
        made_from, shaped = await _shapes(service, items, todo)
        try:
            async with hot.transaction(service.db) as db:
                current = await db.stamps({row.id for row in made_from})
                stale = [row for row in made_from if current.get(row.id) != row.updated]
                if stale:
                    raise _Stale(stale)  # nothing written: the transaction rolls back
                drafts = await _insert(service, db, items, todo, shaped)
                told = await service.ownership.tell_new_runs(db, drafts)
        except _Stale as exc:
            for row in exc.rows:
                service.deployment_reader.forget(row)
            continue
        except IntegrityError:
            if not keyed:
                raise
            continue  # a key taken meanwhile by another call: that run is this item's now
        into_core(service, drafts, told)
        for i, draft in zip(todo, drafts):
            ids[i] = draft.id
        return cast(list[str], ids), len(drafts)
    raise Aborted(
        "runs: not written: their deployments kept changing, or another call kept taking their keys; try again", field="runs"
    )


async def _made_before(service: Scheduler, items: list[_Item], keyed: dict[str, int]) -> list[str | None]:
    """Each item's run made by an earlier call with its key, or None."""
    ids: list[str | None] = [None] * len(items)
    if not keyed:
        return ids
    async with hot.transaction(service.db) as db:
        made = await db.made_with(list(keyed))
    for key, (run_id, deployment) in made.items():
        index = keyed[key]
        if deployment != items[index].deployment:
            raise FailedPrecondition(
                f"runs[{index}].idempotency_key: already used for a run of another deployment, not {items[index].deployment!r}",
                field=f"runs[{index}].idempotency_key",
            )
        ids[index] = run_id
    return ids


async def _shapes(
    service: Scheduler, items: list[_Item], todo: list[int]
) -> tuple[list[DeploymentRow], list[tuple[DeploymentRow, RunShape]]]:
    """The deployments the runs are made from, and each run's deployment and shape: the
    runs of one deployment, queue and set of job variables are checked and rendered once."""
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(items[i].deployment, i)
    found = await asyncio.gather(*(service.deployment_reader.get(name) for name in first), return_exceptions=True)
    deployments: dict[str, DeploymentRow] = {}
    for (name, index), row in zip(first.items(), found):
        if isinstance(row, ShiftbossError):
            raise at(index, row)
        if isinstance(row, BaseException):
            raise row
        deployments[name] = row
    shapes: dict[tuple[str, str, str], RunShape] = {}
    shaped = []
    for i in todo:
        item = items[i]
        deployment = deployments[item.deployment]
        key = (item.deployment, item.queue, json.dumps(item.run_variables, sort_keys=True) if item.run_variables else "")
        shape = shapes.get(key)
        if shape is None:
            try:
                shape = shapes[key] = await service.run_shape(deployment, item.queue, item.run_variables)
            except ShiftbossError as exc:
                raise at(i, exc) from None
        shaped.append((deployment, shape))
    return list(deployments.values()), shaped


async def _insert(
    service: Scheduler,
    db: hot.Statements,
    items: list[_Item],
    todo: list[int],
    shaped: list[tuple[DeploymentRow, RunShape]],
) -> list[FlowRunDraft]:
    """The runs, made and inserted a chunk at a time in the caller's transaction: while the
    database inserts one chunk, the next is made here."""
    drafts: list[FlowRunDraft] = []
    writing: asyncio.Task[None] | None = None
    created = now_utc()  # one moment for the runs of one call, as they commit together
    try:
        for first in range(0, len(todo), CHUNK):
            chunk = []
            for i, (deployment, shape) in zip(todo[first : first + CHUNK], shaped[first : first + CHUNK]):
                item = items[i]
                chunk.append(
                    service.new_draft(deployment, shape, item.parameters, item.start, None, item.key, item.retry_policy, created)
                )
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(db.insert_runs(chunk))
            drafts += chunk
        if writing is not None:
            await writing
    except BaseException:
        if writing is not None and not writing.done():
            writing.cancel()
            with contextlib.suppress(BaseException):
                await writing
        raise
    return drafts
