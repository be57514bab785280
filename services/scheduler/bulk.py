"""Many flow runs in one call (CreateFlowRuns), all or none.

Each item is checked and made as CreateFlowRun makes its run (`check_new_run`,
`draft_run`), and a refusal names the item by its index (`runs[3].deployment: ...`). Then
one transaction writes them all with one statement (creation.insert_new_runs), checking
the `updated` stamps of their deployments as a batch of single creates does: a run made
from a deployment that changed meanwhile makes the whole call start again from the
deployments as they now are. Committed, the runs enter the core together, before the next
admission pass; runs of a pool another replica dispatches are told to it in the same
transaction, as for one run.

Idempotency is per run: an item whose key made a run already (this call, retried) answers
with that run's id and the others are made. Two items with one key are refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from shiftboss._wire import from_struct
from shiftboss.errors import Aborted, FailedPrecondition, InvalidArgument, ShiftbossError
from shiftboss.services.scheduler import hot, retries
from shiftboss.services.scheduler.creation import insert_new_runs, into_core
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft
from shiftboss.v1 import scheduler_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService

#: Most runs one CreateFlowRuns makes.
MAX_RUNS = 10_000
#: Times the runs are made again when a deployment changed before they were written.
MAX_ATTEMPTS = 5


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
    if field and exc.message.startswith(f"{field}:"):
        message = f"{where}.{exc.message}"
    elif field:
        message = f"{where}.{field}: {exc.message}"
    else:
        message = f"{where}: {exc.message}"
    return type(exc)(message, field=f"{where}.{field}" if field else where)


def _checked(service: SchedulerService, index: int, request: scheduler_pb2.CreateFlowRunRequest) -> _Item:
    try:
        start = service.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run_variables = service.check_new_run(request.deployment, request.idempotency_key, from_struct(request.job_variables))
        policy = retries.requested(request)
    except ShiftbossError as exc:
        raise at(index, exc) from None
    parameters = from_struct(request.parameters) if request.HasField("parameters") else {}
    return _Item(request.deployment, request.queue, parameters, run_variables, start, request.idempotency_key, policy)


async def create_runs(
    service: SchedulerService, requests: Sequence[scheduler_pb2.CreateFlowRunRequest]
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
            return ids, 0  # type: ignore[return-value]
        made_from, drafts = await _drafts(service, items, todo)
        try:
            async with hot.transaction(service.db) as db:
                current = await db.stamps({row.id for row in made_from})
                stale = [row for row in made_from if current.get(row.id) != row.updated]
                if stale:
                    raise _Stale(stale)  # nothing written: the transaction rolls back
                told = await insert_new_runs(service, db, drafts)
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
        return ids, len(drafts)  # type: ignore[return-value]
    raise Aborted("runs: their deployments kept changing while the runs were made; try again", field="runs")


async def _made_before(service: SchedulerService, items: list[_Item], keyed: dict[str, int]) -> list[str | None]:
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


async def _drafts(service: SchedulerService, items: list[_Item], todo: list[int]) -> tuple[list[DeploymentRow], list[FlowRunDraft]]:
    """The deployments the runs are made from, and the runs, checked and rendered."""
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
    drafts = []
    for i in todo:
        item = items[i]
        try:
            drafts.append(
                await service.draft_run(
                    deployments[item.deployment], item.queue, item.parameters, item.run_variables, item.start, None,
                    item.key, item.retry_policy,
                )
            )
        except ShiftbossError as exc:
            raise at(i, exc) from None
    return list(deployments.values()), drafts
