"""SchedulerService's gRPC servicer: deployments, flow runs and the worker stream, each
call translated and handed to the engine (engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from grpc import aio

from shiftboss._wire import from_struct, from_timestamp, to_timestamp
from shiftboss.errors import FailedPrecondition, InvalidArgument, NotFound, ShiftbossError
from shiftboss.services import paging
from shiftboss.services.names import validate_name
from shiftboss.services.scheduler import bulk, deployments, readiness, retries, slots, states
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler.dispatch import epoch
from shiftboss.services.scheduler.engine import Scheduler
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunRow, ScheduleRow, now_utc
from shiftboss.services.scheduler.inbound import check_log_line
from shiftboss.services.scheduler.run_access import check_own_run
from shiftboss.services.scheduler.secret_values import masked, open_configuration
from shiftboss.services.scheduler.stream import MAX_LOG_LINES
from shiftboss.services.scheduler.wire import deployment_to_proto, log_event
from shiftboss.services.sealing import Seal
from shiftboss.v1 import pools_pb2, scheduler_pb2, scheduler_pb2_grpc

#: Most runs one list returns.
MAX_LIST = 1000


def _state_names(values: list[int]) -> list[str]:
    return [scheduler_pb2.RunState.Name(v) for v in values]


class SchedulerService(scheduler_pb2_grpc.SchedulerServiceServicer):
    name = "scheduler"
    full_name = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.engine = Scheduler(mesh)

    # ------------------------------------------------------------ lifecycle, for the mesh

    @property
    def seal(self) -> Seal:
        """Signs run tokens; the mesh's authenticator checks them with it."""
        return self.engine.seal

    @property
    def ready(self) -> asyncio.Event:
        return self.engine.ready

    def register(self, server: aio.Server) -> None:
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.engine.start()

    def closing(self) -> None:
        self.engine.closing()

    async def stop(self) -> None:
        await self.engine.stop()

    # ------------------------------------------------------------ deployments

    async def CreateDeployment(self, request: scheduler_pb2.CreateDeploymentRequest, context: Any) -> scheduler_pb2.Deployment:
        deployments.validate_name("name", request.name)
        deployments.validate_entrypoint(request.entrypoint)
        if not request.pool:
            raise InvalidArgument("pool: a work pool name is required", field="pool")
        queue = await self.engine.queue_or_default(request.pool, request.queue)
        await self.engine.check_entrypoint(request.pool, request.entrypoint)
        job_variables = from_struct(request.job_variables)
        job_variables = self.engine.stored_variables(await self.engine.check_variables(request.pool, job_variables), job_variables)
        async with self.engine.db.transaction() as session:
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
        self.engine.schedules_due.set()
        return reply

    async def GetDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        async with self.engine.db.reading() as session:
            reply = deployment_to_proto(await deployments.get(session, request.name))
        return (await readiness.with_status(self.engine, [reply]))[0]

    async def ListDeployments(
        self, request: scheduler_pb2.ListDeploymentsRequest, context: Any
    ) -> scheduler_pb2.ListDeploymentsResponse:
        async with self.engine.db.reading() as session:
            rows = paging.page(await deployments.list_all(session, request.pool), request.limit, request.offset)
            replies = [deployment_to_proto(r) for r in rows]
        return scheduler_pb2.ListDeploymentsResponse(deployments=await readiness.with_status(self.engine, replies))

    async def UpdateDeployment(self, request: scheduler_pb2.UpdateDeploymentRequest, context: Any) -> scheduler_pb2.Deployment:
        async with self.engine.db.reading() as session:
            current = await deployments.get(session, request.name)
        if request.HasField("entrypoint"):
            deployments.validate_entrypoint(request.entrypoint)
            await self.engine.check_entrypoint(current.pool, request.entrypoint)
        if request.HasField("queue"):
            await self.engine.check_queue(current.pool, request.queue)
        secrets = frozenset[str]()
        if request.HasField("job_variables"):
            secrets = await self.engine.check_variables(current.pool, from_struct(request.job_variables))
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
        async with self.engine.db.transaction() as session:
            row = await deployments.get(session, request.name)
            if request.HasField("entrypoint"):
                row.entrypoint = request.entrypoint
            if request.HasField("queue"):
                row.queue = request.queue
            if request.HasField("parameters"):
                row.parameters = from_struct(request.parameters)
            if request.HasField("job_variables"):
                row.job_variables = self.engine.stored_variables(secrets, from_struct(request.job_variables), row.job_variables)
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
        self.engine.forget_runs(dropped, "replaced by the deployment's new schedules")
        self.engine.schedules_due.set()
        return reply

    async def _check_spec(self, spec: scheduler_pb2.DeploymentSpec) -> tuple[list[ScheduleRow], frozenset[str], str]:
        deployments.validate_name("name", spec.name)
        deployments.validate_entrypoint(spec.entrypoint)
        if not spec.pool:
            raise InvalidArgument("pool: a work pool name is required", field="pool")
        queue = await self.engine.queue_or_default(spec.pool, spec.queue)
        await self.engine.check_entrypoint(spec.pool, spec.entrypoint)
        secrets = await self.engine.check_variables(spec.pool, from_struct(spec.job_variables))
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
        async with self.engine.db.transaction() as session:
            for spec, (rows, secrets, queue) in zip(request.deployments, checked):
                try:
                    row: DeploymentRow | None = await deployments.get(session, spec.name)
                except NotFound:
                    row = None
                job_variables = from_struct(spec.job_variables)
                fields = dict(
                    entrypoint=spec.entrypoint, pool=spec.pool, queue=queue,
                    parameters=from_struct(spec.parameters),
                    job_variables=self.engine.stored_variables(secrets, job_variables, row.job_variables if row else None),
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
        self.engine.forget_runs(dropped, "replaced by the deployment's new schedules")
        self.engine.schedules_due.set()
        return scheduler_pb2.ApplyDeploymentsResponse(applied=applied)

    async def _set_paused(self, name: str, paused: bool) -> scheduler_pb2.Deployment:
        """Pausing removes the runs its schedules made that have not gone out (runs made by
        hand stay); resuming makes them again, as Prefect does."""
        async with self.engine.db.transaction() as session:
            row = await deployments.get(session, name)
            dropped = await deployments.drop_schedule_runs(session, row) if paused and not row.paused else []
            row.paused = paused
            row.updated = now_utc()
            await session.flush()
            reply = deployment_to_proto(row)
        self.engine.forget_runs(dropped, "its deployment was paused")
        self.engine.schedules_due.set()
        return reply

    async def PauseDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await self._set_paused(request.name, True)

    async def ResumeDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await self._set_paused(request.name, False)

    async def DeleteDeployment(
        self, request: scheduler_pb2.DeploymentRef, context: Any
    ) -> scheduler_pb2.DeleteDeploymentResponse:
        async with self.engine.db.transaction() as session:
            _, removed = await deployments.delete(session, request.name)
        self.engine.forget_runs(removed, f"deleted with deployment {request.name!r}")
        return scheduler_pb2.DeleteDeploymentResponse()

    async def RunDeployment(self, request: scheduler_pb2.RunDeploymentRequest, context: Any) -> scheduler_pb2.FlowRun:
        start = self.engine.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run = await self.engine.create_run(
            request.name,
            queue=request.queue,
            parameters=from_struct(request.parameters),
            job_variables=from_struct(request.job_variables),
            start=start,
            idempotency_key=request.idempotency_key,
            retry_policy=retries.requested(request),
        )
        return self.engine.to_proto(run)

    # ------------------------------------------------------------ flow runs

    async def CreateFlowRun(self, request: scheduler_pb2.CreateFlowRunRequest, context: Any) -> scheduler_pb2.FlowRun:
        start = self.engine.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run = await self.engine.create_run(
            request.deployment,
            queue=request.queue,
            parameters=from_struct(request.parameters),
            job_variables=from_struct(request.job_variables),
            start=start,
            idempotency_key=request.idempotency_key,
            retry_policy=retries.requested(request),
        )
        return self.engine.to_proto(run)

    async def CreateFlowRuns(self, request: scheduler_pb2.CreateFlowRunsRequest, context: Any) -> scheduler_pb2.CreateFlowRunsResponse:
        ids, created = await bulk.create_runs(self.engine, request.runs)
        return scheduler_pb2.CreateFlowRunsResponse(ids=ids, created=created)

    async def GetFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.FlowRun:
        await check_own_run(self.engine.db, request.id)
        async with self.engine.db.reading() as session:
            run = await run_store.get(session, request.id)
            return self.engine.to_proto(run, await run_store.history(session, run))

    async def ListFlowRuns(self, request: scheduler_pb2.ListFlowRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        paging.check(request.limit, request.offset)
        wanted = _state_names(list(request.state))
        stored = sorted({states.SCHEDULED if s == states.LATE else s for s in wanted})
        async with self.engine.db.reading() as session:
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
                since=self.engine.moment("scheduled_after", request.scheduled_after),
                until=self.engine.moment("scheduled_before", request.scheduled_before),
                limit=min(request.limit or 200, MAX_LIST),
                offset=request.offset,
            )
            if not rows and request.deployment and deployment_id is None and not request.offset:
                raise NotFound(f"deployment {request.deployment!r} not found", field="deployment")
        replies = [self.engine.to_proto(r) for r in rows]
        if wanted:
            names = set(wanted)
            replies = [r for r in replies if scheduler_pb2.RunState.Name(r.state) in names]
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=replies)

    async def CancelFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.FlowRun:
        if self.engine.ownership.enabled:  # the pool's owner changes its runs and tells their workers
            answer = await self.engine.ownership.forward(context, "CancelFlowRun", request, await self.engine.pool_of(request.id))
            if answer is not None:
                return answer
        async with self.engine.db.reading() as session:
            run = await run_store.get(session, request.id)
        if run.state == states.SCHEDULED:
            run = await self.engine.change_state(request.id, states.CANCELLED, message="cancelled before it was released")
        elif run.state in (states.PENDING, states.RUNNING):
            run = await self.engine.change_state(request.id, states.CANCELLING, message="cancel requested")
            if not self.engine.stream.cancel(run):
                run = await self.engine.change_state(request.id, states.CANCELLED, message="its worker is gone")
        elif run.state != states.CANCELLING:
            raise FailedPrecondition(f"state: flow run {request.id!r} is {run.state} and cannot be cancelled", field="state")
        return self.engine.to_proto(run)

    async def SetFlowRunState(self, request: scheduler_pb2.SetFlowRunStateRequest, context: Any) -> scheduler_pb2.FlowRun:
        if request.state == scheduler_pb2.RUN_STATE_UNSPECIFIED:
            raise InvalidArgument("state: a state is required", field="state")
        target = states.parse_state(scheduler_pb2.RunState.Name(request.state))
        await check_own_run(self.engine.db, request.id, to=target, force=request.force)
        if self.engine.ownership.enabled:
            answer = await self.engine.ownership.forward(context, "SetFlowRunState", request, await self.engine.pool_of(request.id))
            if answer is not None:
                return answer
        run = await self.engine.change_state(request.id, target, force=request.force, message=request.message or "set by a user")
        if target == states.CANCELLING:
            self.engine.stream.cancel(run)
        return self.engine.to_proto(run)

    async def WriteFlowRunLogs(self, request: scheduler_pb2.WriteLogsRequest, context: Any) -> scheduler_pb2.WriteLogsResponse:
        await check_own_run(self.engine.db, request.id)
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
        async with self.engine.db.transaction() as session:
            run = await run_store.get(session, request.id)
            _, secrets = open_configuration(self.engine.seal, run.job_configuration)
            if secrets:  # what the worker masks in the run's output, masked here too
                lines = [(at, stream, masked(text, secrets)) for at, stream, text in lines]
            await run_store.add_logs(session, run, lines)
            state = run.state
        for at, stream, text in lines:
            self.engine.events.publish(log_event(request.id, state, at, stream, text))
        return scheduler_pb2.WriteLogsResponse(written=len(lines))

    async def ExplainFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.Explanation:
        async with self.engine.db.reading() as session:
            run = await run_store.get(session, request.id)
        if self.engine.ownership.enabled and run.state not in states.TERMINAL:  # the owner holds its admission state
            answer = await self.engine.ownership.forward(context, "ExplainFlowRun", request, run.pool)
            if answer is not None:
                return answer
        reply = scheduler_pb2.Explanation(
            id=run.id, state=self.engine.to_proto(run).state, pool=run.pool, queue=run.queue
        )
        runtime = self.engine.dispatcher.pools.get(run.pool)
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
        explained = runtime.state.explain(run.seq, epoch(now_utc()), self.engine.settings.prefetch_seconds)
        reply.queue_position = explained.queue_position
        reply.pool_position = explained.pool_position
        reply.blocker, reply.message = explained.blocker, explained.message
        if explained.blocker == "none" and not self.engine.dispatcher.serves(run.pool, run.queue):
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
        async for event in self.engine.run_events(request.id, follow=request.follow, states_too=False, logs_too=True):
            yield scheduler_pb2.LogLine(run=event.run, at=event.at, stream=event.stream, text=event.text)

    async def WatchFlowRun(
        self, request: scheduler_pb2.WatchFlowRunRequest, context: Any
    ) -> AsyncIterator[scheduler_pb2.FlowRunEvent]:
        relayed = await self._from_owner(context, "WatchFlowRun", request, request.id)
        if relayed is not None:  # its changes happen at its pool's owner
            async for event in relayed:
                yield event
            return
        async for event in self.engine.run_events(request.id, follow=True, states_too=True, logs_too=not request.no_logs):
            yield event

    async def _from_owner(self, context: Any, method: str, request: Any, run_id: str) -> Any:
        """A followed run's stream, relayed from another replica that owns its pool; None here."""
        if not self.engine.ownership.enabled:
            return None
        async with self.engine.db.reading() as session:
            run = await run_store.get(session, run_id)
        if run.state in states.TERMINAL:
            return None
        return await self.engine.ownership.forward_stream(context, method, request, run.pool)

    # ------------------------------------------------------------ previews

    async def _upcoming(self, pool: str, queue: str, hours: float) -> scheduler_pb2.ListFlowRunsResponse:
        if hours < 0:
            raise InvalidArgument(f"hours: must not be negative, got {hours:g}", field="hours")
        await self.engine.check_queue(pool, queue) if queue else await self.engine.call(self.engine.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
        until = now_utc() + timedelta(hours=hours or 1)
        async with self.engine.db.reading() as session:
            rows = await run_store.search(
                session, pool=pool, queue=queue, stored_states=[states.SCHEDULED], until=until, limit=MAX_LIST, soonest_first=True
            )
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.engine.to_proto(r) for r in self.engine.waterfall_order(pool, rows)])

    async def PreviewWorkPool(self, request: scheduler_pb2.PreviewRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        return await self._upcoming(request.pool, request.queue, request.hours)

    async def PreviewWorkQueue(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        return await self._upcoming(request.pool, request.name, request.hours)

    async def ReadWorkQueueRuns(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        await self.engine.check_queue(request.pool, request.name)
        async with self.engine.db.reading() as session:
            rows = await run_store.search(
                session, pool=request.pool, queue=request.name, stored_states=[states.SCHEDULED], limit=MAX_LIST, soonest_first=True
            )
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.engine.to_proto(r) for r in rows])

    async def ListPoolSlots(self, request: scheduler_pb2.PoolSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self.engine, request.pool, request.queue)

    async def ListQueueSlots(self, request: scheduler_pb2.QueueSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self.engine, request.pool, request.name)

    async def NextRuns(self, request: scheduler_pb2.NextRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        if request.limit < 0:
            raise InvalidArgument(f"limit: must not be negative, got {request.limit}", field="limit")
        prefetch = request.prefetch_seconds if request.HasField("prefetch_seconds") else self.engine.settings.prefetch_seconds
        if prefetch < 0:
            raise InvalidArgument(f"prefetch_seconds: must not be negative, got {prefetch:g}", field="prefetch_seconds")
        await self.engine.call(self.engine.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=request.pool))
        for queue in request.queues:
            await self.engine.check_queue(request.pool, queue)
        if self.engine.ownership.enabled:
            answer = await self.engine.ownership.forward(context, "NextRuns", request, request.pool)
            if answer is not None:
                return answer
        await self.engine.ready.wait()
        runtime = self.engine.dispatcher.pools.get(request.pool)
        if runtime is None:
            return scheduler_pb2.ListFlowRunsResponse()
        # A look, not a trial admission on a copy: it costs the runs it returns, not the pool's size.
        keys = runtime.state.peek(epoch(now_utc()), prefetch, list(request.queues) or None, min(request.limit or MAX_LIST, MAX_LIST))
        async with self.engine.db.reading() as session:
            rows = {r.seq: r for r in await run_store.by_seq(session, keys)}
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=[self.engine.to_proto(rows[k]) for k in keys if k in rows])

    async def GetPoolUsage(self, request: scheduler_pb2.PoolUsageRequest, context: Any) -> scheduler_pb2.PoolUsage:
        async with self.engine.db.reading() as session:
            in_flight, waiting = await run_store.usage(session, request.pool, request.queue)
            users = await deployments.list_all(session, request.pool)
            late, served = await run_store.health(session, request.pool, request.queue, now_utc(), self.engine.settings.late_seconds)
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
        if self.engine.ownership.enabled:  # the owner renames in its admission state as it writes
            answer = await self.engine.ownership.forward(context, "RenameWorkQueue", request, request.pool)
            if answer is not None:
                return answer
        moved = await self.engine.rename_queue(request.pool, request.name, request.new_name)
        return scheduler_pb2.RenameWorkQueueResponse(deployments=moved[0], runs=moved[1])

    # ------------------------------------------------------------ the worker stream

    def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[scheduler_pb2.SchedulerMessage]:
        return self.engine.stream.connect(request_iterator, context)




def build(mesh: Any) -> SchedulerService:
    return SchedulerService(mesh)
