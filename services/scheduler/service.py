"""SchedulerService's gRPC servicer: deployments, flow runs and the worker stream, each
call translated and handed to the engine (engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from shiftboss._wire import from_struct
from shiftboss.errors import InvalidArgument
from shiftboss.services import paging
from shiftboss.services.names import validate_name
from shiftboss.services.scheduler import bulk, deploying, retries, run_control, run_views, slots, states
from shiftboss.services.scheduler.engine import Scheduler
from shiftboss.services.scheduler.run_access import check_own_run
from shiftboss.services.sealing import Seal
from shiftboss.v1 import scheduler_pb2, scheduler_pb2_grpc


class SchedulerService(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Each method checks what only the request can tell, hands the call to the pool's
    owner when another replica owns it (ownership.py), and otherwise calls the engine."""

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
        return await deploying.create(self.engine, request)

    async def GetDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await deploying.read(self.engine, request.name)

    async def ListDeployments(
        self, request: scheduler_pb2.ListDeploymentsRequest, context: Any
    ) -> scheduler_pb2.ListDeploymentsResponse:
        listed = await deploying.listed(self.engine, request.pool, request.limit, request.offset)
        return scheduler_pb2.ListDeploymentsResponse(deployments=listed)

    async def UpdateDeployment(self, request: scheduler_pb2.UpdateDeploymentRequest, context: Any) -> scheduler_pb2.Deployment:
        return await deploying.update(self.engine, request)

    async def ApplyDeployments(
        self, request: scheduler_pb2.ApplyDeploymentsRequest, context: Any
    ) -> scheduler_pb2.ApplyDeploymentsResponse:
        return scheduler_pb2.ApplyDeploymentsResponse(applied=await deploying.apply(self.engine, request.deployments))

    async def PauseDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await deploying.set_paused(self.engine, request.name, True)

    async def ResumeDeployment(self, request: scheduler_pb2.DeploymentRef, context: Any) -> scheduler_pb2.Deployment:
        return await deploying.set_paused(self.engine, request.name, False)

    async def DeleteDeployment(
        self, request: scheduler_pb2.DeploymentRef, context: Any
    ) -> scheduler_pb2.DeleteDeploymentResponse:
        await deploying.delete(self.engine, request.name)
        return scheduler_pb2.DeleteDeploymentResponse()

    async def RunDeployment(self, request: scheduler_pb2.RunDeploymentRequest, context: Any) -> scheduler_pb2.FlowRun:
        return await self._create_run(request.name, request)

    # ------------------------------------------------------------ flow runs

    async def CreateFlowRun(self, request: scheduler_pb2.CreateFlowRunRequest, context: Any) -> scheduler_pb2.FlowRun:
        return await self._create_run(request.deployment, request)

    async def _create_run(
        self, deployment: str, request: scheduler_pb2.CreateFlowRunRequest | scheduler_pb2.RunDeploymentRequest
    ) -> scheduler_pb2.FlowRun:
        start = self.engine.start_time(request.start_in if request.HasField("start_in") else None, request.start_at)
        run = await self.engine.create_run(
            deployment,
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
        return await run_views.read(self.engine, request.id)

    async def ListFlowRuns(self, request: scheduler_pb2.ListFlowRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        paging.check(request.limit, request.offset)
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=await run_views.search(self.engine, request))

    async def CancelFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.FlowRun:
        if self.engine.ownership.enabled:  # the pool's owner changes its runs and tells their workers
            answer = await self.engine.ownership.forward(context, "CancelFlowRun", request, await self.engine.pool_of(request.id))
            if answer is not None:
                return answer
        return self.engine.to_proto(await run_control.cancel(self.engine, request.id))

    async def SetFlowRunState(self, request: scheduler_pb2.SetFlowRunStateRequest, context: Any) -> scheduler_pb2.FlowRun:
        if request.state == scheduler_pb2.RUN_STATE_UNSPECIFIED:
            raise InvalidArgument("state: a state is required", field="state")
        target = states.parse_state(scheduler_pb2.RunState.Name(request.state))
        await check_own_run(self.engine.db, request.id, to=target, force=request.force)
        if self.engine.ownership.enabled:
            answer = await self.engine.ownership.forward(context, "SetFlowRunState", request, await self.engine.pool_of(request.id))
            if answer is not None:
                return answer
        run = await run_control.set_state(self.engine, request.id, target, force=request.force, message=request.message)
        return self.engine.to_proto(run)

    async def WriteFlowRunLogs(self, request: scheduler_pb2.WriteLogsRequest, context: Any) -> scheduler_pb2.WriteLogsResponse:
        await check_own_run(self.engine.db, request.id)
        return scheduler_pb2.WriteLogsResponse(written=await run_control.write_logs(self.engine, request.id, list(request.lines)))

    async def ExplainFlowRun(self, request: scheduler_pb2.FlowRunRef, context: Any) -> scheduler_pb2.Explanation:
        run = await self.engine.get_run(request.id)
        if self.engine.ownership.enabled and run.state not in states.TERMINAL:  # the owner holds its admission state
            answer = await self.engine.ownership.forward(context, "ExplainFlowRun", request, run.pool)
            if answer is not None:
                return answer
        return run_views.explain(self.engine, run)

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
        run = await self.engine.get_run(run_id)
        if run.state in states.TERMINAL:
            return None
        return await self.engine.ownership.forward_stream(context, method, request, run.pool)

    # ------------------------------------------------------------ previews

    async def PreviewWorkPool(self, request: scheduler_pb2.PreviewRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=await run_views.upcoming(self.engine, request.pool, request.queue, request.hours))

    async def PreviewWorkQueue(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=await run_views.upcoming(self.engine, request.pool, request.name, request.hours))

    async def ReadWorkQueueRuns(
        self, request: scheduler_pb2.PreviewQueueRequest, context: Any
    ) -> scheduler_pb2.ListFlowRunsResponse:
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=await run_views.waiting(self.engine, request.pool, request.name))

    async def ListPoolSlots(self, request: scheduler_pb2.PoolSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self.engine, request.pool, request.queue)

    async def ListQueueSlots(self, request: scheduler_pb2.QueueSlotsRequest, context: Any) -> scheduler_pb2.Slots:
        return await slots.holders(self.engine, request.pool, request.name)

    async def NextRuns(self, request: scheduler_pb2.NextRunsRequest, context: Any) -> scheduler_pb2.ListFlowRunsResponse:
        prefetch = await run_views.check_next(self.engine, request)
        if self.engine.ownership.enabled:
            answer = await self.engine.ownership.forward(context, "NextRuns", request, request.pool)
            if answer is not None:
                return answer
        found = await run_views.next_runs(self.engine, request.pool, list(request.queues), prefetch, request.limit)
        return scheduler_pb2.ListFlowRunsResponse(flow_runs=found)

    async def GetPoolUsage(self, request: scheduler_pb2.PoolUsageRequest, context: Any) -> scheduler_pb2.PoolUsage:
        return await run_views.usage(self.engine, request.pool, request.queue)

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
