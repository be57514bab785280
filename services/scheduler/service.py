"""SchedulerService's gRPC servicer: deployments, flow runs and the worker stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from grpc import aio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shiftboss._wire import from_struct, from_timestamp, to_timestamp
from shiftboss.entrypoints import admitted
from shiftboss.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, ShiftbossError
from shiftboss.services import paging
from shiftboss.services.db import open_database, release_database
from shiftboss.services.names import validate_name
from shiftboss.services.scheduler import background, bulk, deployments, readiness, retries, slots, states
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler.creation import DeploymentReader, RunInserter, StaleDeployment
from shiftboss.services.scheduler.dispatch import Dispatcher, epoch
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, FlowRunRow, RunShape, ScheduleRow, new_id, now_utc
from shiftboss.services.scheduler.ownership import Ownership
from shiftboss.services.scheduler.rendering import RenderCache, Rendering
from shiftboss.services.scheduler.inbound import check_log_line
from shiftboss.services.scheduler.run_access import check_own_run
from shiftboss.services.scheduler.secret_values import (
    check_unsealed, masked, open_configuration, open_variables, seal_configuration, seal_variables,
)
from shiftboss.services.scheduler.stream import MAX_LOG_LINES, StreamHandler
from shiftboss.services.scheduler.telemetry import observe
from shiftboss.services.scheduler.wire import deployment_to_proto, log_event, run_to_proto, state_event, transition_event
from shiftboss.services.sealing import Seal, decode_key, new_key_text
from shiftboss.v1 import pools_pb2, pools_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, templates_pb2, templates_pb2_grpc

log = logging.getLogger("shiftboss.scheduler")

#: Most runs one list returns.
MAX_LIST = 1000
#: Times a new run is made again when its deployment changed before it was written.
MAX_CREATE_ATTEMPTS = 5
#: Longest idempotency key a create takes (a UUID is 32 to 36).
MAX_IDEMPOTENCY_KEY = 128


#: Furthest ahead a run may be started with start_in: ten years.
MAX_START_IN_SECONDS = 10 * 365 * 24 * 3600.0


def _state_names(values: list[int]) -> list[str]:
    return [scheduler_pb2.RunState.Name(v) for v in values]


class SchedulerService(scheduler_pb2_grpc.SchedulerServiceServicer):
    name = "scheduler"
    full_name = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.settings = mesh.settings
        self.db = open_database(self.settings.database_url_for(self.name))
        # On PostgreSQL with no key configured, the replicas' shared key replaces this at start.
        self.seal = Seal.load(self.settings.secret_key, self.settings.home) if self.settings.secret_key or self.db.is_sqlite else Seal(os.urandom(32))
        self.dispatcher = Dispatcher(self.db, self.settings, self.seal)
        #: Which pools this replica dispatches, when several share one PostgreSQL.
        self.ownership = Ownership(self)
        if self.ownership.enabled:
            self.dispatcher.ownership = self.ownership
        self.ready = asyncio.Event()
        self.events = self.dispatcher.events
        self.stream = StreamHandler(self)
        self.inserts = RunInserter(self)
        self.deployment_reader = DeploymentReader(self)
        self.renders = RenderCache(self)
        self.tasks: list[asyncio.Task[None]] = []
        self.schedules_due = asyncio.Event()
        self.observer = observe(self)

    # ------------------------------------------------------------ lifecycle

    def register(self, server: aio.Server) -> None:
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.db.upgrade(self.name)
        if not self.settings.secret_key and not self.db.is_sqlite:
            self.seal.rekey(await shared_key(self.db))
        await self.ownership.start(self.mesh.peers.local_address)
        self.stream.outcomes.start()
        self.inserts.start()
        self.deployment_reader.start()
        self.tasks = background.start_all(self)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 30)

    def closing(self) -> None:
        self.stream.drain_all("the server is stopping")
        self.events.close()
        self.ownership.closing()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deployment_reader.stop()
        await self.inserts.stop()
        await self.stream.outcomes.stop()
        await self.ownership.stop()
        await self.dispatcher.close()
        if self.observer is not None:
            self.observer.close()
        await release_database(self.db)

    # ------------------------------------------------------------ peers

    @property
    def pools(self) -> pools_pb2_grpc.PoolServiceStub:
        return self.mesh.peers.stub("pools", pools_pb2_grpc.PoolServiceStub)

    @property
    def templates(self) -> templates_pb2_grpc.TemplateServiceStub:
        return self.mesh.peers.stub("templates", templates_pb2_grpc.TemplateServiceStub)

    async def call(self, method: Any, request: Any) -> Any:
        return await self.mesh.peers.call(method, request)

    async def render(self, pool: str, deployment_variables: dict[str, Any], run_variables: dict[str, Any]) -> Rendering:
        """The job configuration, as TemplateService renders it (see rendering.py)."""
        return await self.renders.render(pool, deployment_variables, run_variables)

    async def check_variables(self, pool: str, job_variables: dict[str, Any]) -> frozenset[str]:
        """A deployment's job variables, checked against its pool's template: each must be
        declared and fit its schema; what the schema requires may be left to the runs.
        Returns the names of the template's secret variables."""
        check_unsealed(job_variables)
        request = templates_pb2.RenderRequest(pool=pool, leave_required=True)
        request.deployment_variables.update(job_variables)
        return frozenset((await self.call(self.templates.Render, request)).secret_variables)

    def stored_variables(self, secrets: frozenset[str], job_variables: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
        """Job variables as stored: secret values sealed (see secret_values.py)."""
        return seal_variables(self.seal, secrets, job_variables, before)

    async def check_entrypoint(self, pool: str, entrypoint: str) -> None:
        """Refuse an entrypoint the pool's policy does not admit (shiftboss.entrypoints)."""
        runtime = self.dispatcher.pools.get(pool)
        if runtime is not None:
            allowed = runtime.allowed_entrypoints
        else:
            allowed = list((await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))).allowed_entrypoints)
        if not admitted(entrypoint, allowed):
            raise FailedPrecondition(
                f"entrypoint: {entrypoint!r} is not among the entrypoints work pool {pool!r} allows ({', '.join(allowed)})",
                field="entrypoint",
            )

    async def check_queue(self, pool: str, queue: str) -> None:
        await self.call(self.pools.GetWorkQueue, pools_pb2.WorkQueueRef(name=queue, pool=pool, without_health=True))

    async def queue_or_default(self, pool: str, queue: str) -> str:
        """The queue named, once it exists; none named: the pool's default queue, which keeps
        that role when renamed."""
        if queue:
            await self.check_queue(pool, queue)
            return queue
        reply = await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
        return reply.default_queue or "default"

    async def rename_queue(self, pool: str, name: str, new_name: str) -> tuple[int, int]:
        """Deployments, runs and the admission state follow a queue's new name, under the
        pool's lock so that no state change sees one name in the database and the other in
        the core. Applied again, it changes nothing."""
        async with self.lock_for(pool):
            async with self.db.transaction() as session:
                moved = await deployments.move_queue(session, pool, name, new_name)
            for row in list(self.deployment_reader.kept.values()):
                if row.pool == pool and row.queue == name:
                    self.deployment_reader.forget(row)
            self.dispatcher.rename_queue(pool, name, new_name)
        if any(moved):
            log.info("work queue %r of pool %r renamed %r: %d deployments and %d runs follow", name, pool, new_name, *moved)
        return moved

    # ------------------------------------------------------------ runs: the one way a state changes

    def lock_for(self, pool: str) -> Any:
        runtime = self.dispatcher.pools.get(pool)
        return runtime.lock if runtime is not None else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def locks_for(self, pools: Iterable[str]) -> AsyncIterator[None]:
        """Several pools' locks, always taken in name order (an admission pass holds one)."""
        async with contextlib.AsyncExitStack() as stack:
            for pool in sorted(set(pools)):
                await stack.enter_async_context(self.lock_for(pool))
            yield

    async def change_state(self, run_id: str, to: str, **options: Any) -> FlowRunRow:
        """Validate and record one transition (the options of `transition`), then mirror it
        in the core, under the pool's lock."""
        async with self.db.reading() as session:
            pool = (await run_store.get(session, run_id)).pool
        self.ownership.fence([pool])  # NotOwner now for a pool another replica dispatches
        async with self.lock_for(pool):
            async with self.db.transaction() as session:
                await self.ownership.check(session, pool)  # refused by the database when stale
                run = await run_store.get(session, run_id, lock=True)
                history: list[dict[str, Any]] = []
                done = self.transition(history, run, to, **options)
                await run_store.add_history(session, history)
            if done is None:
                return run
            self.dispatcher.apply(done)
        if self.events.listening:
            self.events.publish(transition_event(done))
        return run

    def forget_runs(self, runs: list[FlowRunRow], why: str) -> None:
        """Waiting runs deleted from the database: out of the core, and their watchers told."""
        now = now_utc()
        for run in runs:
            self.dispatcher.apply(run_store.Transition(run, states.SCHEDULED, states.CANCELLED))
            self.events.publish(state_event(run.id, states.CANCELLED, now, why))
        by_pool: dict[str, list[int]] = {}
        for run in runs:
            by_pool.setdefault(run.pool, []).append(run.seq)
        for pool, keys in by_pool.items():  # a pool dispatched by another replica: its core too
            self.ownership.tell_runs(pool, dropped=keys)

    def transition(
        self,
        history: list[dict[str, Any]],
        run: Any,
        to: str,
        *,
        lease: int | None = None,
        worker: str | None = None,
        force: bool = False,
        message: str = "",
        exit_code: int | None = None,
        at: datetime | None = None,
        idempotent: bool = False,
        late: bool = False,
    ) -> run_store.Transition | None:
        """Check and record one transition of a locked run (a FlowRunRow or a LiveRun); its
        line of history goes to `history`, which the caller writes in the same transaction.
        None when it is a repeat. The caller mirrors it in the core once committed, then
        publishes it (wire.transition_event) if anyone watches.

        ``late`` is the outcome of a run that ended while its worker could not reach us:
        with its lease still current and given to that very worker (a run keeps the worker
        of its last lease when it goes back to SCHEDULED), it overrides what we guessed
        meanwhile (SCHEDULED again, or CRASHED), since the worker knows how the run really
        ended. The refusal names no lease but the one the caller sent."""
        if lease is not None and (run.lease != lease or (worker is not None and run.worker != worker)):
            raise FailedPrecondition(f"lease: {lease} is stale or not this worker's for flow run {run.id!r}", field="lease")
        if lease is not None and retries.repeated(run, to):
            return None
        guessed = late and worker is not None and lease is not None and run.state in (states.SCHEDULED, states.CRASHED)
        if idempotent and run.state == to:
            return None
        states.check(run.state, to, force=force or guessed)
        moment = at or now_utc()
        if retries.due(run, to, force):
            message = retries.schedule(run, now_utc(), to, message)
            change = run_store.record(history, run, states.SCHEDULED, moment, message)
            run.state_name = retries.AWAITING_RETRY
        else:
            change = run_store.record(history, run, to, moment, message)
        if to == states.RUNNING:
            run.started = moment
            run.run_count += 1
            run.lease_expires = None
        if exit_code is not None:
            run.exit_code = exit_code
        change.exit_code = exit_code
        return change

    async def create_run(
        self,
        deployment_name: str,
        *,
        queue: str = "",
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        start: datetime | None = None,
        slot: str | None = None,
        idempotency_key: str = "",
        retry_policy: tuple[int | None, float | None] = (None, None),
    ) -> FlowRunDraft | FlowRunRow:
        """A new run, committed and in the core; with an idempotency key a run made already,
        the one that key made."""
        run_variables = self.check_new_run(deployment_name, idempotency_key, job_variables)
        for _ in range(MAX_CREATE_ATTEMPTS):
            deployment = await self.deployment_reader.get(deployment_name)
            try:
                run = await self.draft_run(
                    deployment, queue, parameters or {}, run_variables, start, slot, idempotency_key, retry_policy
                )
            except StaleDeployment:
                continue  # kept from before its queue was renamed: read again
            try:
                await self.inserts.add(run, deployment)
            except StaleDeployment:
                continue  # the deployment changed meanwhile: made again from what it is now
            except IntegrityError:
                if not idempotency_key:
                    raise
                return await self._made_with(idempotency_key, deployment_name)
            return run
        raise Aborted(f"deployment: {deployment_name!r} kept changing while the run was made; try again", field="deployment")

    @staticmethod
    def check_new_run(deployment_name: str, idempotency_key: str, job_variables: dict[str, Any] | None) -> dict[str, Any]:
        """What a new run's request must hold before anything is looked up; its job variables."""
        if not deployment_name:
            raise InvalidArgument("deployment: a deployment name is required", field="deployment")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(
                f"idempotency_key: at most {MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}", field="idempotency_key"
            )
        return deployments.validate_object("job_variables", job_variables or {})

    async def draft_run(
        self,
        deployment: DeploymentRow,
        queue: str,
        parameters: dict[str, Any],
        run_variables: dict[str, Any],
        start: datetime | None,
        slot: str | None,
        idempotency_key: str,
        retry_policy: tuple[int | None, float | None],
    ) -> FlowRunDraft:
        """A new run of the deployment, checked and rendered, not written yet."""
        shape = await self.run_shape(deployment, queue, run_variables)
        return self.new_draft(deployment, shape, parameters, start, slot, idempotency_key, retry_policy)

    async def _made_with(self, idempotency_key: str, deployment_name: str) -> FlowRunRow:
        """The run an earlier call with this key made (a retry of that call)."""
        async with self.db.reading() as session:
            run = await run_store.by_idempotency_key(session, idempotency_key)
        if run is None:  # the key's insert failed for another reason
            raise Aborted("idempotency_key: the run could not be made; try again", field="idempotency_key")
        if run.deployment != deployment_name:
            raise FailedPrecondition(
                f"idempotency_key: already used for a run of another deployment, not {deployment_name!r}", field="idempotency_key"
            )
        return run

    async def run_shape(self, deployment: DeploymentRow, queue: str, run_variables: dict[str, Any]) -> RunShape:
        """What every run of this deployment in this queue with these job variables shares,
        checked and rendered: its queue exists, the pool admits its entrypoint, its job
        configuration."""
        queue = queue or deployment.queue
        if queue != deployment.queue:
            try:
                await self.check_queue(deployment.pool, queue)
            except NotFound as exc:  # PoolService's answer, which names no field of ours
                raise NotFound(exc.message, field="queue") from None
        check_unsealed(run_variables)
        try:
            rendering = await self.render(deployment.pool, open_variables(self.seal, deployment.job_variables), run_variables)
        except InvalidArgument as exc:  # TemplateService's answer
            raise InvalidArgument(exc.message, field=exc.field or "job_variables") from None
        await self.ready.wait()
        if not self.dispatcher.knows_queue(deployment.pool, queue):
            if queue == deployment.queue and self.deployment_reader.kept.get(deployment.name) is deployment:
                self.deployment_reader.forget(deployment)
                raise StaleDeployment(deployment.name)
            raise NotFound(f"work queue {queue!r} not found in work pool {deployment.pool!r}", field="queue")
        await self.check_entrypoint(deployment.pool, deployment.entrypoint)
        return RunShape(
            queue,
            self.stored_variables(rendering.secret_names, run_variables),
            seal_configuration(self.seal, rendering.configuration, rendering.secrets),
        )

    def new_draft(
        self,
        deployment: DeploymentRow,
        shape: RunShape,
        parameters: dict[str, Any],
        start: datetime | None,
        slot: str | None,
        idempotency_key: str,
        retry_policy: tuple[int | None, float | None],
        created: datetime | None = None,
    ) -> FlowRunDraft:
        """One run of that shape (`created` now, unless the caller made many at one moment).
        Its documents may be shared with other runs: none is changed once made."""
        created = created or now_utc()
        run_id = new_id()
        return FlowRunDraft(
            id=run_id,
            name=run_store.run_name(),
            deployment_id=deployment.id,
            deployment=deployment.name,
            pool=deployment.pool,
            queue=shape.queue,
            entrypoint=deployment.entrypoint,
            parameters={**deployment.parameters, **parameters} if parameters else deployment.parameters,
            job_variables=shape.job_variables,
            job_configuration=shape.job_configuration,
            scheduled_start=start or created,
            state=states.SCHEDULED,
            created=created,
            slot=slot,
            idempotency_key=idempotency_key or None,
            retries=deployment.retries if retry_policy[0] is None else retry_policy[0],
            retry_delay_seconds=deployment.retry_delay_seconds if retry_policy[1] is None else retry_policy[1],
            traceparent=self.observer.caller_traceparent(slot, run_id) if self.observer else "",
        )

    def to_proto(self, run: FlowRunRow | FlowRunDraft, history: list[Any] | None = None) -> scheduler_pb2.FlowRun:
        return run_to_proto(run, now_utc(), self.settings.late_seconds, history)

    @staticmethod
    def start_time(start_in: float | None, start_at: str) -> datetime | None:
        if start_in is not None and start_at:
            raise InvalidArgument("start_at: give --start-in or --start-at, not both", field="start_at")
        if start_in is not None:
            if not 0 <= start_in <= MAX_START_IN_SECONDS:  # also refuses NaN
                raise InvalidArgument(
                    f"start_in: must be between 0 and {MAX_START_IN_SECONDS:.0f} seconds (10 years), got {start_in:g}",
                    field="start_in",
                )
            return now_utc() + timedelta(seconds=start_in)
        return SchedulerService.moment("start_at", start_at)

    @staticmethod
    def moment(field: str, text: str) -> datetime | None:
        """An ISO 8601 time a request gives (UTC without an offset); None when it gives none."""
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(f"{field}: {text!r} is not an ISO 8601 time", field=field) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    # ------------------------------------------------------------ deployments

    async def CreateDeployment(self, request: scheduler_pb2.CreateDeploymentRequest, context: Any) -> scheduler_pb2.Deployment:
        deployments.validate_name("name", request.name)
        deployments.validate_entrypoint(request.entrypoint)
        if not request.pool:
            raise InvalidArgument("pool: a work pool name is required", field="pool")
        queue = await self.queue_or_default(request.pool, request.queue)
        await self.check_entrypoint(request.pool, request.entrypoint)
        job_variables = from_struct(request.job_variables)
        job_variables = self.stored_variables(await self.check_variables(request.pool, job_variables), job_variables)
        async with self.db.transaction() as session:
            row = await deployments.create(
                session,
                name=request.name,
                pool=request.pool,
                queue=queue,
                entrypoint=request.entrypoint,
                parameters=from_struct(request.parameters),
                job_variables=job_variables,
                cron=request.cron,
                timezone=request.timezone,
                interval=request.interval,
                rrule=request.rrule,
                anchor_date=request.anchor_date,
                description=request.description,
                tags=list(request.tags),
                paused=request.paused,
                retries=request.retries,
                retry_delay_seconds=request.retry_delay_seconds,
            )
            reply = deployment_to_proto(row)
        self.schedules_due.set()
        return reply

    async def GetDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        async with self.db.reading() as session:
            reply = deployment_to_proto(await deployments.get(session, request.name))
        return (await readiness.with_status(self, [reply]))[0]

    async def ListDeployments(
        self, request: scheduler_pb2.ListDeploymentsRequest, context: Any
    ) -> scheduler_pb2.ListDeploymentsResponse:
        async with self.db.reading() as session:
            rows = paging.page(await deployments.list_all(session, request.pool), request.limit, request.offset)
            replies = [deployment_to_proto(r) for r in rows]
        return scheduler_pb2.ListDeploymentsResponse(deployments=await readiness.with_status(self, replies))

    async def UpdateDeployment(self, request: scheduler_pb2.UpdateDeploymentRequest, context: Any) -> scheduler_pb2.Deployment:
        async with self.db.reading() as session:
            current = await deployments.get(session, request.name)
        if request.HasField("entrypoint"):
            deployments.validate_entrypoint(request.entrypoint)
            await self.check_entrypoint(current.pool, request.entrypoint)
        if request.HasField("queue"):
            await self.check_queue(current.pool, request.queue)
        secrets = frozenset[str]()
        if request.HasField("job_variables"):
            secrets = await self.check_variables(current.pool, from_struct(request.job_variables))
        retries.check(
            request.retries if request.HasField("retries") else current.retries,
            request.retry_delay_seconds if request.HasField("retry_delay_seconds") else current.retry_delay_seconds,
        )
        new_schedule = None
        schedule_given = request.HasField("cron") or request.HasField("interval") or request.HasField("rrule")
        replace_schedules = request.clear_schedules or schedule_given
        if schedule_given or request.anchor_date:
            new_schedule = deployments.schedule_row(
                request.cron, request.timezone, request.interval, request.rrule, request.anchor_date
            )
        async with self.db.transaction() as session:
            row = await deployments.get(session, request.name)
            if request.HasField("entrypoint"):
                row.entrypoint = request.entrypoint
            if request.HasField("queue"):
                row.queue = request.queue
            if request.HasField("parameters"):
                row.parameters = from_struct(request.parameters)
            if request.HasField("job_variables"):
                row.job_variables = self.stored_variables(secrets, from_struct(request.job_variables), row.job_variables)
            if request.HasField("description"):
                row.description = request.description
            if request.HasField("retries"):
                row.retries = request.retries
            if request.HasField("retry_delay_seconds"):
                row.retry_delay_seconds = request.retry_delay_seconds
            dropped: list[FlowRunRow] = []
            if replace_schedules or request.HasField("queue"):  # made again, by the new schedules or in the new queue
                dropped = await deployments.drop_schedule_runs(session, row)
            if replace_schedules:
                row.schedules = [new_schedule] if new_schedule else []
            row.updated = now_utc()
            await session.flush()
            reply = deployment_to_proto(row)
        self.forget_runs(dropped, "replaced by the deployment's new schedules")
        self.schedules_due.set()
        return reply

    async def _check_spec(self, spec: scheduler_pb2.DeploymentSpec) -> tuple[list[ScheduleRow], frozenset[str], str]:
        deployments.validate_name("name", spec.name)
        deployments.validate_entrypoint(spec.entrypoint)
        if not spec.pool:
            raise InvalidArgument("pool: a work pool name is required", field="pool")
        queue = await self.queue_or_default(spec.pool, spec.queue)
        await self.check_entrypoint(spec.pool, spec.entrypoint)
        secrets = await self.check_variables(spec.pool, from_struct(spec.job_variables))
        retries.check(spec.retries, spec.retry_delay_seconds)
        rows = []
        for i, schedule in enumerate(spec.schedules):
            if not schedule.cron and not schedule.interval and not schedule.rrule:
                raise InvalidArgument(f"schedules[{i}]: give a cron expression, an interval or an rrule", field="schedules")
            try:
                row = deployments.schedule_row(
                    schedule.cron, schedule.timezone, schedule.interval, schedule.rrule, schedule.anchor_date
                )
            except ShiftbossError as exc:
                raise type(exc)(f"schedules[{i}].{exc.message}", field="schedules") from None
            assert row is not None
            row.paused = schedule.paused
            rows.append(row)
        return rows, secrets, queue

    async def ApplyDeployments(
        self, request: scheduler_pb2.ApplyDeploymentsRequest, context: Any
    ) -> scheduler_pb2.ApplyDeploymentsResponse:
        """Every spec is checked first and every problem reported at once; then all are
        written in one transaction, so a file with one bad deployment changes nothing."""
        if not request.deployments:
            raise InvalidArgument("deployments: nothing to apply", field="deployments")
        problems: list[ShiftbossError] = []
        checked: list[tuple[list[ScheduleRow], frozenset[str], str]] = []
        seen: set[str] = set()
        for i, spec in enumerate(request.deployments):
            where = f"deployments[{i}]"
            try:
                if spec.name in seen:
                    raise InvalidArgument(f"name: {spec.name!r} appears more than once", field="name")
                seen.add(spec.name)
                checked.append(await self._check_spec(spec))
            except ShiftbossError as exc:
                named = exc.field is not None and exc.message.startswith(f"{exc.field}")
                problems.append(type(exc)(f"{where}.{exc.message}" if named else f"{where}: {exc.message}"))
        if problems:
            raise type(problems[0])("; ".join(p.message for p in problems), field="deployments")
        applied: list[scheduler_pb2.AppliedDeployment] = []
        dropped: list[FlowRunRow] = []
        async with self.db.transaction() as session:
            for spec, (rows, secrets, queue) in zip(request.deployments, checked):
                try:
                    row: DeploymentRow | None = await deployments.get(session, spec.name)
                except NotFound:
                    row = None
                job_variables = from_struct(spec.job_variables)
                fields = dict(
                    entrypoint=spec.entrypoint, pool=spec.pool, queue=queue,
                    parameters=from_struct(spec.parameters),
                    job_variables=self.stored_variables(secrets, job_variables, row.job_variables if row else None),
                    description=spec.description, tags=list(spec.tags), paused=spec.paused,
                    retries=spec.retries, retry_delay_seconds=spec.retry_delay_seconds,
                )
                if row is None:
                    row = await deployments.create(session, name=spec.name, **fields)
                    row.schedules = rows
                    action = "created"
                else:
                    moved = (row.pool, row.queue) != (fields["pool"], fields["queue"])
                    rescheduled = deployments.schedule_signature(row.schedules) != deployments.schedule_signature(rows)
                    changed = moved or rescheduled or any(getattr(row, k) != v for k, v in fields.items())
                    if moved or rescheduled:
                        dropped += await deployments.drop_schedule_runs(session, row)
                    if rescheduled:
                        row.schedules = rows
                    for key, value in fields.items():
                        setattr(row, key, value)
                    if changed:
                        row.updated = now_utc()
                    action = "updated" if changed else "unchanged"
                await session.flush()
                applied.append(scheduler_pb2.AppliedDeployment(action=action, deployment=deployment_to_proto(row)))
        self.forget_runs(dropped, "replaced by the deployment's new schedules")
        self.schedules_due.set()
        return scheduler_pb2.ApplyDeploymentsResponse(applied=applied)

    async def _set_paused(self, name: str, paused: bool) -> scheduler_pb2.Deployment:
        """Pausing removes the runs its schedules made that have not gone out (runs made by
        hand stay); resuming makes them again, as Prefect does."""
        async with self.db.transaction() as session:
            row = await deployments.get(session, name)
            dropped = await deployments.drop_schedule_runs(session, row) if paused and not row.paused else []
            row.paused = paused
            row.updated = now_utc()
            await session.flush()
            reply = deployment_to_proto(row)
        self.forget_runs(dropped, "its deployment was paused")
        self.schedules_due.set()
        return reply

    async def PauseDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await self._set_paused(request.name, True)

    async def ResumeDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await self._set_paused(request.name, False)

    async def DeleteDeployment(
        self, request: scheduler_pb2.DeploymentRef, context: Any
    ) -> scheduler_pb2.DeleteDeploymentResponse:
        async with self.db.transaction() as session:
            _, removed = await deployments.delete(session, request.name)
        self.forget_runs(removed, f"deleted with deployment {request.name!r}")
        return scheduler_pb2.DeleteDeploymentResponse()

    async def RunDeployment(self, request: scheduler_pb2.RunDeploymentRequest, context: Any) -> scheduler_pb2.FlowRun:
        start = self.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run = await self.create_run(
            request.name,
            queue=request.queue,
            parameters=from_struct(request.parameters),
            job_variables=from_struct(request.job_variables),
            start=start,
            idempotency_key=request.idempotency_key,
            retry_policy=retries.requested(request),
        )
        return self.to_proto(run)

    # ------------------------------------------------------------ flow runs

    async def CreateFlowRun(self, request: scheduler_pb2.CreateFlowRunRequest, context: Any) -> scheduler_pb2.FlowRun:
        start = self.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run = await self.create_run(
            request.deployment,
            queue=request.queue,
            parameters=from_struct(request.parameters),
            job_variables=from_struct(request.job_variables),
            start=start,
            idempotency_key=request.idempotency_key,
            retry_policy=retries.requested(request),
        )
        return self.to_proto(run)

    async def CreateFlowRuns(self, request: scheduler_pb2.CreateFlowRunsRequest, context: Any) -> scheduler_pb2.CreateFlowRunsResponse:
        ids, created = await bulk.create_runs(self, request.runs)
        return scheduler_pb2.CreateFlowRunsResponse(ids=ids, created=created)

    async def GetFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.FlowRun:
        await check_own_run(self.db, request.id)
        async with self.db.reading() as session:
            run = await run_store.get(session, request.id)
            return self.to_proto(run, await run_store.history(session, run))

    async def ListFlowRuns(self, request: scheduler_pb2.ListFlowRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        paging.check(request.limit, request.offset)
        wanted = _state_names(list(request.state))
        stored = sorted({states.SCHEDULED if s == states.LATE else s for s in wanted})
        async with self.db.reading() as session:
            # The deployment's runs; once it is deleted, the runs that keep its name.
            deployment_id = None
            if request.deployment:
                with contextlib.suppress(NotFound):
                    deployment_id = (await deployments.get(session, request.deployment)).id
            rows = await run_store.search(
                session,
                pool=request.pool,
                queue=request.queue,
                stored_states=stored,
                deployment_id=deployment_id,
                deployment=request.deployment if deployment_id is None else "",
                since=self.moment("scheduled_after", request.scheduled_after),
                until=self.moment("scheduled_before", request.scheduled_before),
                limit=min(request.limit or 200, MAX_LIST),
                offset=request.offset,
            )
            if not rows and request.deployment and deployment_id is None and not request.offset:
                raise NotFound(f"deployment {request.deployment!r} not found", field="deployment")
        replies = [self.to_proto(r) for r in rows]
        if wanted:
            names = set(wanted)
            replies = [r for r in replies if scheduler_pb2.RunState.Name(r.state) in names]
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=replies)

    async def _pool_of(self, run_id: str) -> str:
        async with self.db.reading() as session:
            return (await run_store.get(session, run_id)).pool

    async def CancelFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.FlowRun:
        if self.ownership.enabled:  # the pool's owner changes its runs and tells their workers
            answer = await self.ownership.forward(context, "CancelFlowRun", request, await self._pool_of(request.id))
            if answer is not None:
                return answer
        async with self.db.reading() as session:
            run = await run_store.get(session, request.id)
        if run.state == states.SCHEDULED:
            run = await self.change_state(request.id, states.CANCELLED, message="cancelled before it was released")
        elif run.state in (states.PENDING, states.RUNNING):
            run = await self.change_state(request.id, states.CANCELLING, message="cancel requested")
            if not self.stream.cancel(run):
                run = await self.change_state(request.id, states.CANCELLED, message="its worker is gone")
        elif run.state != states.CANCELLING:
            raise FailedPrecondition(f"state: flow run {request.id!r} is {run.state} and cannot be cancelled", field="state")
        return self.to_proto(run)

    async def SetFlowRunState(self, request: scheduler_pb2.SetFlowRunStateRequest, context: Any) -> scheduler_pb2.FlowRun:
        if request.state == scheduler_pb2.RUN_STATE_UNSPECIFIED:
            raise InvalidArgument("state: a state is required", field="state")
        target = states.parse_state(scheduler_pb2.RunState.Name(request.state))
        await check_own_run(self.db, request.id, to=target, force=request.force)
        if self.ownership.enabled:
            answer = await self.ownership.forward(context, "SetFlowRunState", request, await self._pool_of(request.id))
            if answer is not None:
                return answer
        run = await self.change_state(request.id, target, force=request.force, message=request.message or "set by a user")
        if target == states.CANCELLING:
            self.stream.cancel(run)
        return self.to_proto(run)

    async def WriteFlowRunLogs(self, request: scheduler_pb2.WriteLogsRequest, context: Any) -> scheduler_pb2.WriteLogsResponse:
        await check_own_run(self.db, request.id)
        if len(request.lines) > MAX_LOG_LINES:
            raise InvalidArgument(f"lines: at most {MAX_LOG_LINES} per request, got {len(request.lines)}", field="lines")
        lines = []
        for i, line in enumerate(request.lines):
            line.run = request.id
            try:
                check_log_line(line)
            except ShiftbossError as exc:
                raise type(exc)(f"lines[{i}].{exc.message}", field="lines") from None
            lines.append((from_timestamp(line.at) if line.HasField("at") else now_utc(), line.stream or "stdout", line.text))
        async with self.db.transaction() as session:
            run = await run_store.get(session, request.id)
            _, secrets = open_configuration(self.seal, run.job_configuration)
            if secrets:  # what the worker masks in the run's output, masked here too
                lines = [(at, stream, masked(text, secrets)) for at, stream, text in lines]
            await run_store.add_logs(session, run, lines)
            state = run.state
        for at, stream, text in lines:
            self.events.publish(log_event(request.id, state, at, stream, text))
        return scheduler_pb2.WriteLogsResponse(written=len(lines))

    async def ExplainFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.Explanation:
        async with self.db.reading() as session:
            run = await run_store.get(session, request.id)
        if self.ownership.enabled and run.state not in states.TERMINAL:  # the owner holds its admission state
            answer = await self.ownership.forward(context, "ExplainFlowRun", request, run.pool)
            if answer is not None:
                return answer
        reply = scheduler_pb2.Explanation(
            id=run.id, state=self.to_proto(run).state, pool=run.pool, queue=run.queue
        )
        runtime = self.dispatcher.pools.get(run.pool)
        if run.state in states.TERMINAL:
            reply.blocker, reply.message = "finished", f"the run ended {run.state}"
            return reply
        if run.state == states.CANCELLING:
            reply.blocker = "cancelling"
            reply.message = f"being cancelled: its slot is free, and worker {run.worker or '?'} is stopping it"
            return reply
        if runtime is None or run.seq not in runtime.state:
            reply.blocker, reply.message = "unknown", "the scheduler does not hold this run"
            return reply
        explained = runtime.state.explain(run.seq, epoch(now_utc()), self.settings.prefetch_seconds)
        reply.queue_position = explained.queue_position
        reply.pool_position = explained.pool_position
        reply.blocker, reply.message = explained.blocker, explained.message
        if explained.blocker == "none" and not self.dispatcher.serves(run.pool, run.queue):
            reply.blocker = "no_worker"
            reply.message = f"no connected worker serves queue {run.queue!r} of work pool {run.pool!r}"
        if run.state_name == retries.AWAITING_RETRY:
            reply.message = f"{retries.describe(run)}; {reply.message}"
        return reply

    async def FlowRunLogs(self, request: scheduler_pb2.LogsRequest, context: Any) -> AsyncIterator[scheduler_pb2.LogLine]:
        relayed = await self._from_owner(context, "FlowRunLogs", request, request.id) if request.follow else None
        if relayed is not None:  # its lines arrive at the replica its worker streams to
            async for line in relayed:
                yield line
            return
        async for event in self._run_events(request.id, follow=request.follow, states_too=False, logs_too=True):
            yield scheduler_pb2.LogLine(run=event.run, at=event.at, stream=event.stream, text=event.text)

    async def WatchFlowRun(
        self, request: scheduler_pb2.WatchFlowRunRequest, context: Any
    ) -> AsyncIterator[scheduler_pb2.FlowRunEvent]:
        relayed = await self._from_owner(context, "WatchFlowRun", request, request.id)
        if relayed is not None:  # its changes happen at its pool's owner
            async for event in relayed:
                yield event
            return
        async for event in self._run_events(request.id, follow=True, states_too=True, logs_too=not request.no_logs):
            yield event

    async def _from_owner(self, context: Any, method: str, request: Any, run_id: str) -> Any:
        """A followed run's stream, relayed from another replica that owns its pool; None here."""
        if not self.ownership.enabled:
            return None
        async with self.db.reading() as session:
            run = await run_store.get(session, run_id)
        if run.state in states.TERMINAL:
            return None
        return await self.ownership.forward_stream(context, method, request, run.pool)

    async def _run_events(
        self, run_id: str, *, follow: bool, states_too: bool, logs_too: bool
    ) -> AsyncIterator[scheduler_pb2.FlowRunEvent]:
        """What is stored of a run, in time order, then (when following) what happens to it until it ends.

        The subscription starts before the read, so nothing falls in between; what both
        return is sent once."""
        subscription = self.events.subscribe(lambda event: event.run == run_id)
        try:
            async with self.db.reading() as session:
                run = await run_store.get(session, run_id)
                changes = await run_store.history(session, run) if states_too else []
                lines = await run_store.logs(session, run) if logs_too else []
        except BaseException:
            subscription.cancel()
            raise
        stored = [state_event(run.id, c.state, c.at, c.message) for c in changes]
        if stored and run.state in states.TERMINAL and run.exit_code is not None:
            stored[-1].exit_code = run.exit_code  # the history's last change is how the run ended
        stored += [log_event(run.id, run.state, line.at, line.stream, line.text) for line in lines]
        stored.sort(key=lambda e: e.at.ToNanoseconds())
        seen = {(e.kind, e.at.ToNanoseconds(), e.text) for e in stored}
        for event in stored:
            yield event
        if not follow or run.state in states.TERMINAL:
            subscription.cancel()
            return
        async for event in subscription.events():
            if (event.kind, event.at.ToNanoseconds(), event.text) in seen:
                continue
            if event.kind == "log" and logs_too or event.kind == "state" and states_too:
                yield event
            if event.kind == "state" and scheduler_pb2.RunState.Name(event.state) in states.TERMINAL:
                return

    # ------------------------------------------------------------ previews

    def _waterfall_order(self, pool: str, rows: list[FlowRunRow]) -> list[FlowRunRow]:
        runtime = self.dispatcher.pools.get(pool)
        rank = {name: i for i, name in enumerate(runtime.state.queues())} if runtime else {}
        return sorted(rows, key=lambda r: (rank.get(r.queue, len(rank)), r.scheduled_start, r.seq))

    async def _upcoming(self, pool: str, queue: str, hours: float) -> scheduler_pb2.ListFlowRunsResponse:
        if hours < 0:
            raise InvalidArgument(f"hours: must not be negative, got {hours:g}", field="hours")
        await self.check_queue(pool, queue) if queue else await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
        until = now_utc() + timedelta(hours=hours or 1)
        async with self.db.reading() as session:
            rows = await run_store.search(
                session, pool=pool, queue=queue, stored_states=[states.SCHEDULED], until=until, limit=MAX_LIST, soonest_first=True
            )
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.to_proto(r) for r in self._waterfall_order(pool, rows)])

    async def PreviewWorkPool(self, request: scheduler_pb2.PreviewRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        return await self._upcoming(request.pool, request.queue, request.hours)

    async def PreviewWorkQueue(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        return await self._upcoming(request.pool, request.name, request.hours)

    async def ReadWorkQueueRuns(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        await self.check_queue(request.pool, request.name)
        async with self.db.reading() as session:
            rows = await run_store.search(
                session, pool=request.pool, queue=request.name, stored_states=[states.SCHEDULED], limit=MAX_LIST, soonest_first=True
            )
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.to_proto(r) for r in rows])

    async def ListPoolSlots(self, request: scheduler_pb2.PoolSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self, request.pool, request.queue)

    async def ListQueueSlots(self, request: scheduler_pb2.QueueSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self, request.pool, request.name)

    async def NextRuns(self, request: scheduler_pb2.NextRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        if request.limit < 0:
            raise InvalidArgument(f"limit: must not be negative, got {request.limit}", field="limit")
        prefetch = request.prefetch_seconds if request.HasField("prefetch_seconds") else self.settings.prefetch_seconds
        if prefetch < 0:
            raise InvalidArgument(f"prefetch_seconds: must not be negative, got {prefetch:g}", field="prefetch_seconds")
        await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=request.pool))
        for queue in request.queues:
            await self.check_queue(request.pool, queue)
        if self.ownership.enabled:
            answer = await self.ownership.forward(context, "NextRuns", request, request.pool)
            if answer is not None:
                return answer
        await self.ready.wait()
        runtime = self.dispatcher.pools.get(request.pool)
        if runtime is None:
            return scheduler_pb2.ListFlowRunsResponse()
        # A look, not a trial admission on a copy: it costs the runs it returns, not the pool's size.
        keys = runtime.state.peek(epoch(now_utc()), prefetch, list(request.queues) or None, min(request.limit or MAX_LIST, MAX_LIST))
        async with self.db.reading() as session:
            rows = {r.seq: r for r in await run_store.by_seq(session, keys)}
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.to_proto(rows[k]) for k in keys if k in rows])

    async def GetPoolUsage(self, request: scheduler_pb2.PoolUsageRequest, context: Any) -> scheduler_pb2.PoolUsage:
        async with self.db.reading() as session:
            in_flight, waiting = await run_store.usage(session, request.pool, request.queue)
            users = await deployments.list_all(session, request.pool)
            late, served = await run_store.health(session, request.pool, request.queue, now_utc(), self.settings.late_seconds)
        names = [d.name for d in users if not request.queue or d.queue == request.queue]
        reply = scheduler_pb2.PoolUsage(in_flight=in_flight, waiting=waiting, deployments=names, late=late)
        if served is not None:
            reply.last_dispatched.CopyFrom(to_timestamp(served))
        return reply

    async def RenameWorkQueue(
        self, request: scheduler_pb2.RenameWorkQueueRequest, context: Any
    ) -> scheduler_pb2.RenameWorkQueueResponse:
        for field in ("pool", "name", "new_name"):
            validate_name(field, getattr(request, field))
        if self.ownership.enabled:  # the owner renames in its admission state as it writes
            answer = await self.ownership.forward(context, "RenameWorkQueue", request, request.pool)
            if answer is not None:
                return answer
        moved = await self.rename_queue(request.pool, request.name, request.new_name)
        return scheduler_pb2.RenameWorkQueueResponse(deployments=moved[0], runs=moved[1])

    # ------------------------------------------------------------ the worker stream

    def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[scheduler_pb2.SchedulerMessage]:
        return self.stream.connect(request_iterator, context)


def build(mesh: Any) -> SchedulerService:
    return SchedulerService(mesh)


async def shared_key(db: Any) -> bytes:
    """The key every replica on this PostgreSQL database uses when none is configured: made
    by the first to ask, read by the others."""
    async with db.transaction() as session:
        await session.execute(
            text("INSERT INTO scheduler_keys (name, value) VALUES ('seal', :value) ON CONFLICT (name) DO NOTHING"),
            {"value": new_key_text()},
        )
        stored = (await session.execute(text("SELECT value FROM scheduler_keys WHERE name = 'seal'"))).scalar_one()
    return decode_key(stored, "scheduler_keys.seal")
