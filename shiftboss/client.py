"""The Python SDK: `Client` (blocking) and `AsyncClient` (asyncio) over the gRPC stubs.

Both share one set of typed methods (`_Api`); each method builds its request and hands
it to `_invoke`, which is a plain call in `Client` and an awaitable in `AsyncClient`.
Calls carry a deadline, are retried on UNAVAILABLE by gRPC's own retry policy (a second or
two), and a failure is raised as the matching `shiftboss.errors` class with the server's
message. Creating a run (create_flow_run, run_deployment) sends an idempotency key made for
the call, so a retry never makes a second run, and is retried on UNAVAILABLE for longer
(`SHIFTBOSS_CREATE_RETRY_SECONDS`): through a server restart or a database outage.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Required, TypedDict

import grpc
from grpc import aio

from shiftboss._wire import to_struct
from shiftboss.channels import call_metadata, open_aio_channel, open_channel
from shiftboss.errors import InvalidArgument, ShiftbossError, Unavailable, error_for_code
from shiftboss.settings import Settings, load_settings
from shiftboss.v1 import (
    heartbeats_pb2,
    heartbeats_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    pools_pb2,
    pools_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
)

__all__ = ["Client", "AsyncClient", "NewFlowRun", "STUBS"]

#: Service short names and their stub classes; the CLI finds services here too.
STUBS: dict[str, Any] = {
    "PoolService": pools_pb2_grpc.PoolServiceStub,
    "TemplateService": templates_pb2_grpc.TemplateServiceStub,
    "HeartbeatService": heartbeats_pb2_grpc.HeartbeatServiceStub,
    "SchedulerService": scheduler_pb2_grpc.SchedulerServiceStub,
    "KeyService": keys_pb2_grpc.KeyServiceStub,
}

def _translate(exc: grpc.RpcError, address: str) -> ShiftbossError:
    code = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"cannot reach the shiftboss server at {address}: {details}")
    if code == grpc.StatusCode.INTERNAL and details == "Internal error from Core":
        # gRPC's own transport failed the call, not the server: worth another try.
        return Unavailable(f"the call to the shiftboss server at {address} failed in gRPC's transport; try again")
    return error_for_code(code.name, details)


#: Calls safe to send again with the same request (they carry an idempotency key, one per run).
_KEYED = frozenset({"CreateFlowRun", "RunDeployment", "CreateFlowRuns"})
#: Backoff between those tries, from the first to the most.
_RETRY_FIRST_SECONDS, _RETRY_MOST_SECONDS = 0.2, 2.0


def _keyed(method: str, request: Any) -> None:
    """A create without an idempotency key gets one for this call (and all its tries), from
    the SDK's methods and the CLI alike."""
    if method == "CreateFlowRuns":
        for run in request.runs:
            if not run.idempotency_key:
                run.idempotency_key = uuid.uuid4().hex
    elif method in _KEYED and not request.idempotency_key:
        request.idempotency_key = uuid.uuid4().hex


class NewFlowRun(TypedDict, total=False):
    """One run for `create_flow_runs`: what `create_flow_run` takes, by the same names."""

    deployment: Required[str]
    queue: str
    parameters: dict[str, Any]
    job_variables: dict[str, Any]
    start_in: float
    start_at: str
    idempotency_key: str
    retries: int
    retry_delay_seconds: float


def _again(exc: grpc.RpcError, method: str, waited: float, budget: float, delay: float) -> bool:
    """Whether to try the call again after `delay` seconds."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and method in _KEYED and waited + delay <= budget


def _set_optional(request: Any, **values: Any) -> Any:
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            getattr(request, name).CopyFrom(to_struct(value))
        else:
            setattr(request, name, value)
    return request


class _Api:
    """Typed methods shared by both clients."""

    def _invoke(self, service: str, method: str, request: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _stream(self, service: str, method: str, request: Any, timeout: float | None = None) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # ---------------------------------------------------------------- work pools

    def create_work_pool(
        self,
        name: str,
        type: str,
        *,
        description: str = "",
        paused: bool = False,
        concurrency_limit: int | None = None,
        base_job_template: dict[str, Any] | None = None,
        worker_queue_limit: int = 0,
        allowed_entrypoints: list[str] | None = None,
    ) -> pools_pb2.WorkPool:
        request = pools_pb2.CreateWorkPoolRequest(
            name=name, type=type, description=description, paused=paused, worker_queue_limit=worker_queue_limit,
            allowed_entrypoints=allowed_entrypoints or [],
        )
        _set_optional(request, concurrency_limit=concurrency_limit, base_job_template=base_job_template)
        return self._invoke("PoolService", "CreateWorkPool", request)

    def get_work_pool(self, name: str) -> pools_pb2.WorkPool:
        return self._invoke("PoolService", "GetWorkPool", pools_pb2.WorkPoolRef(name=name))

    def list_work_pools(self, *, limit: int = 0, offset: int = 0) -> pools_pb2.ListWorkPoolsResponse:
        return self._invoke("PoolService", "ListWorkPools", pools_pb2.ListWorkPoolsRequest(limit=limit, offset=offset))

    def update_work_pool(
        self,
        name: str,
        *,
        description: str | None = None,
        concurrency_limit: int | None = None,
        base_job_template: dict[str, Any] | None = None,
        worker_queue_limit: int | None = None,
        allowed_entrypoints: list[str] | None = None,
    ) -> pools_pb2.WorkPool:
        """Change what is given; `allowed_entrypoints=[]` lets every entrypoint through again."""
        request = _set_optional(
            pools_pb2.UpdateWorkPoolRequest(
                name=name,
                allowed_entrypoints=allowed_entrypoints or [],
                clear_allowed_entrypoints=allowed_entrypoints == [],
            ),
            description=description,
            concurrency_limit=concurrency_limit,
            base_job_template=base_job_template,
            worker_queue_limit=worker_queue_limit,
        )
        return self._invoke("PoolService", "UpdateWorkPool", request)

    def pause_work_pool(self, name: str) -> pools_pb2.WorkPool:
        return self._invoke("PoolService", "PauseWorkPool", pools_pb2.WorkPoolRef(name=name))

    def resume_work_pool(self, name: str) -> pools_pb2.WorkPool:
        return self._invoke("PoolService", "ResumeWorkPool", pools_pb2.WorkPoolRef(name=name))

    def set_work_pool_concurrency_limit(self, name: str, limit: int) -> pools_pb2.WorkPool:
        request = pools_pb2.SetWorkPoolConcurrencyLimitRequest(name=name, concurrency_limit=limit)
        return self._invoke("PoolService", "SetWorkPoolConcurrencyLimit", request)

    def clear_work_pool_concurrency_limit(self, name: str) -> pools_pb2.WorkPool:
        return self._invoke("PoolService", "ClearWorkPoolConcurrencyLimit", pools_pb2.WorkPoolRef(name=name))

    def delete_work_pool(self, name: str) -> pools_pb2.DeleteResponse:
        return self._invoke("PoolService", "DeleteWorkPool", pools_pb2.WorkPoolRef(name=name))

    # ---------------------------------------------------------------- work queues

    def create_work_queue(
        self,
        name: str,
        pool: str,
        *,
        priority: int | None = None,
        concurrency_limit: int | None = None,
        description: str = "",
        paused: bool = False,
    ) -> pools_pb2.WorkQueue:
        request = pools_pb2.CreateWorkQueueRequest(name=name, pool=pool, description=description, paused=paused)
        _set_optional(request, priority=priority, concurrency_limit=concurrency_limit)
        return self._invoke("PoolService", "CreateWorkQueue", request)

    def get_work_queue(self, name: str, pool: str) -> pools_pb2.WorkQueue:
        return self._invoke("PoolService", "GetWorkQueue", pools_pb2.WorkQueueRef(name=name, pool=pool))

    def list_work_queues(self, pool: str, *, limit: int = 0, offset: int = 0) -> pools_pb2.ListWorkQueuesResponse:
        request = pools_pb2.ListWorkQueuesRequest(pool=pool, limit=limit, offset=offset)
        return self._invoke("PoolService", "ListWorkQueues", request)

    def update_work_queue(
        self,
        name: str,
        pool: str,
        *,
        priority: int | None = None,
        concurrency_limit: int | None = None,
        description: str | None = None,
        new_name: str | None = None,
    ) -> pools_pb2.WorkQueue:
        """Change a queue; `new_name` renames it (its deployments and runs follow)."""
        request = _set_optional(
            pools_pb2.UpdateWorkQueueRequest(name=name, pool=pool),
            priority=priority,
            concurrency_limit=concurrency_limit,
            description=description,
            new_name=new_name,
        )
        return self._invoke("PoolService", "UpdateWorkQueue", request)

    def pause_work_queue(self, name: str, pool: str) -> pools_pb2.WorkQueue:
        return self._invoke("PoolService", "PauseWorkQueue", pools_pb2.WorkQueueRef(name=name, pool=pool))

    def resume_work_queue(self, name: str, pool: str) -> pools_pb2.WorkQueue:
        return self._invoke("PoolService", "ResumeWorkQueue", pools_pb2.WorkQueueRef(name=name, pool=pool))

    def set_work_queue_concurrency_limit(self, name: str, pool: str, limit: int) -> pools_pb2.WorkQueue:
        request = pools_pb2.SetWorkQueueConcurrencyLimitRequest(name=name, pool=pool, concurrency_limit=limit)
        return self._invoke("PoolService", "SetWorkQueueConcurrencyLimit", request)

    def clear_work_queue_concurrency_limit(self, name: str, pool: str) -> pools_pb2.WorkQueue:
        return self._invoke(
            "PoolService", "ClearWorkQueueConcurrencyLimit", pools_pb2.WorkQueueRef(name=name, pool=pool)
        )

    def delete_work_queue(self, name: str, pool: str) -> pools_pb2.DeleteResponse:
        return self._invoke("PoolService", "DeleteWorkQueue", pools_pb2.WorkQueueRef(name=name, pool=pool))

    def ensure_work_queues(self, pool: str, names: list[str]) -> pools_pb2.ListWorkQueuesResponse:
        request = pools_pb2.EnsureWorkQueuesRequest(pool=pool, names=names)
        return self._invoke("PoolService", "EnsureWorkQueues", request)

    def watch(self, pool: str = "", *, initial: bool = False) -> Any:
        """Committed pool and queue changes as they happen (an iterator, or an async one)."""
        return self._stream("PoolService", "Watch", pools_pb2.WatchRequest(pool=pool, initial=initial))

    # ---------------------------------------------------------------- templates

    def get_default_base_job_template(self, type: str) -> templates_pb2.BaseJobTemplate:
        request = templates_pb2.GetDefaultBaseJobTemplateRequest(type=type)
        return self._invoke("TemplateService", "GetDefaultBaseJobTemplate", request)

    def validate_template(self, template: dict[str, Any]) -> templates_pb2.ValidateTemplateResponse:
        request = templates_pb2.ValidateTemplateRequest(template=to_struct(template))
        return self._invoke("TemplateService", "ValidateTemplate", request)

    def render(
        self,
        pool: str = "",
        *,
        template: dict[str, Any] | None = None,
        deployment_variables: dict[str, Any] | None = None,
        run_variables: dict[str, Any] | None = None,
    ) -> templates_pb2.RenderResponse:
        request = _set_optional(
            templates_pb2.RenderRequest(pool=pool),
            template=template,
            deployment_variables=deployment_variables,
            run_variables=run_variables,
        )
        return self._invoke("TemplateService", "Render", request)


    # ---------------------------------------------------------------- deployments

    def create_deployment(
        self,
        name: str,
        pool: str,
        entrypoint: str,
        *,
        queue: str = "",
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        cron: str = "",
        timezone: str = "",
        interval: float = 0.0,
        description: str = "",
        tags: list[str] | None = None,
        paused: bool = False,
        rrule: str = "",
        anchor_date: str = "",
        retries: int = 0,
        retry_delay_seconds: float = 0.0,
    ) -> scheduler_pb2.Deployment:
        request = scheduler_pb2.CreateDeploymentRequest(
            name=name, pool=pool, entrypoint=entrypoint, queue=queue, cron=cron, timezone=timezone,
            interval=interval, description=description, tags=tags or [], paused=paused, rrule=rrule,
            anchor_date=anchor_date, retries=retries, retry_delay_seconds=retry_delay_seconds,
        )
        _set_optional(request, parameters=parameters, job_variables=job_variables)
        return self._invoke("SchedulerService", "CreateDeployment", request)

    def get_deployment(self, name: str) -> scheduler_pb2.Deployment:
        return self._invoke("SchedulerService", "GetDeployment", scheduler_pb2.DeploymentRef(name=name))

    def list_deployments(self, pool: str = "", *, limit: int = 0, offset: int = 0) -> scheduler_pb2.ListDeploymentsResponse:
        request = scheduler_pb2.ListDeploymentsRequest(pool=pool, limit=limit, offset=offset)
        return self._invoke("SchedulerService", "ListDeployments", request)

    def update_deployment(
        self,
        name: str,
        *,
        entrypoint: str | None = None,
        queue: str | None = None,
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> scheduler_pb2.Deployment:
        """Change what is given; a secret job variable sent back as ******** keeps its value."""
        request = scheduler_pb2.UpdateDeploymentRequest(name=name)
        _set_optional(
            request, entrypoint=entrypoint, queue=queue, parameters=parameters, job_variables=job_variables, description=description
        )
        return self._invoke("SchedulerService", "UpdateDeployment", request)

    def pause_deployment(self, name: str) -> scheduler_pb2.Deployment:
        return self._invoke("SchedulerService", "PauseDeployment", scheduler_pb2.DeploymentRef(name=name))

    def resume_deployment(self, name: str) -> scheduler_pb2.Deployment:
        return self._invoke("SchedulerService", "ResumeDeployment", scheduler_pb2.DeploymentRef(name=name))

    def delete_deployment(self, name: str) -> scheduler_pb2.DeleteDeploymentResponse:
        return self._invoke("SchedulerService", "DeleteDeployment", scheduler_pb2.DeploymentRef(name=name))

    # ---------------------------------------------------------------- flow runs

    def create_flow_run(
        self,
        deployment: str,
        *,
        queue: str = "",
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        start_in: float | None = None,
        start_at: str = "",
        idempotency_key: str = "",
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
    ) -> scheduler_pb2.FlowRun:
        """A new run of the deployment. A call retried with the same `idempotency_key` (one
        is made per call when none is given) answers the run the first made."""
        request = scheduler_pb2.CreateFlowRunRequest(
            deployment=deployment, queue=queue, start_at=start_at, idempotency_key=idempotency_key
        )
        _set_optional(request, retries=retries, retry_delay_seconds=retry_delay_seconds)
        return self._new_run("CreateFlowRun", request, parameters, job_variables, start_in)

    def _new_run(
        self, method: str, request: Any, parameters: dict[str, Any] | None, job_variables: dict[str, Any] | None, start_in: float | None
    ) -> Any:
        _set_optional(request, parameters=parameters, job_variables=job_variables, start_in=start_in)
        return self._invoke("SchedulerService", method, request)

    def create_flow_runs(
        self, runs: Iterable[NewFlowRun | scheduler_pb2.CreateFlowRunRequest]
    ) -> scheduler_pb2.CreateFlowRunsResponse:
        """Many runs in one call, all or none (at most 10,000): the reply's `ids` are theirs, in
        order (`get_flow_run` reads one). Each run gets an idempotency key when it has none,
        kept through the retries, so a call retried while the server is unavailable makes
        each run once. A refusal names the run by its index: `runs[3].deployment: ...`."""
        request = scheduler_pb2.CreateFlowRunsRequest()
        for run in runs:
            if isinstance(run, scheduler_pb2.CreateFlowRunRequest):
                request.runs.append(run)
                continue
            item = request.runs.add(
                deployment=run["deployment"], queue=run.get("queue", ""), start_at=run.get("start_at", ""),
                idempotency_key=run.get("idempotency_key", ""),
            )
            _set_optional(
                item, parameters=run.get("parameters"), job_variables=run.get("job_variables"), start_in=run.get("start_in"),
                retries=run.get("retries"), retry_delay_seconds=run.get("retry_delay_seconds"),
            )
        return self._invoke("SchedulerService", "CreateFlowRuns", request)

    def run_deployment(
        self,
        name: str,
        *,
        queue: str = "",
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        start_in: float | None = None,
        start_at: str = "",
        idempotency_key: str = "",
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
    ) -> scheduler_pb2.FlowRun:
        """A run of the deployment, as `shiftboss deployment run` makes it (`idempotency_key`
        as for create_flow_run)."""
        request = scheduler_pb2.RunDeploymentRequest(name=name, queue=queue, start_at=start_at, idempotency_key=idempotency_key)
        _set_optional(request, retries=retries, retry_delay_seconds=retry_delay_seconds)
        return self._new_run("RunDeployment", request, parameters, job_variables, start_in)

    def get_flow_run(self, id: str) -> scheduler_pb2.FlowRun:
        return self._invoke("SchedulerService", "GetFlowRun", scheduler_pb2.FlowRunRef(id=id))

    def list_flow_runs(
        self, *, pool: str = "", queue: str = "", states: list[str] | None = None, deployment: str = "", limit: int = 0,
        offset: int = 0, scheduled_after: str = "", scheduled_before: str = "",
    ) -> scheduler_pb2.ListFlowRunsResponse:
        request = scheduler_pb2.ListFlowRunsRequest(
            pool=pool, queue=queue, deployment=deployment, limit=limit, offset=offset,
            scheduled_after=scheduled_after, scheduled_before=scheduled_before,
            state=[scheduler_pb2.RunState.Value(s) for s in states or []],
        )
        return self._invoke("SchedulerService", "ListFlowRuns", request)

    def list_pool_slots(self, pool: str, queue: str = "") -> scheduler_pb2.Slots:
        """The runs holding the slots of a pool (or of one of its queues), the longest held first."""
        return self._invoke("SchedulerService", "ListPoolSlots", scheduler_pb2.PoolSlotsRequest(pool=pool, queue=queue))

    def list_queue_slots(self, name: str, pool: str) -> scheduler_pb2.Slots:
        return self._invoke("SchedulerService", "ListQueueSlots", scheduler_pb2.QueueSlotsRequest(name=name, pool=pool))

    def cancel_flow_run(self, id: str) -> scheduler_pb2.FlowRun:
        return self._invoke("SchedulerService", "CancelFlowRun", scheduler_pb2.FlowRunRef(id=id))

    def set_flow_run_state(self, id: str, state: str, *, force: bool = False, message: str = "") -> scheduler_pb2.FlowRun:
        request = scheduler_pb2.SetFlowRunStateRequest(
            id=id, state=scheduler_pb2.RunState.Value(state), force=force, message=message
        )
        return self._invoke("SchedulerService", "SetFlowRunState", request)

    def write_flow_run_logs(self, id: str, lines: list[str], *, stream: str = "stdout") -> scheduler_pb2.WriteLogsResponse:
        """Add lines to a run's logs: what a flow does with its run token (its
        SHIFTBOSS_API_KEY, and its run id in SHIFTBOSS_FLOW_RUN_ID)."""
        request = scheduler_pb2.WriteLogsRequest(id=id, lines=[scheduler_pb2.LogLine(stream=stream, text=t) for t in lines])
        return self._invoke("SchedulerService", "WriteFlowRunLogs", request)

    def explain_flow_run(self, id: str) -> scheduler_pb2.Explanation:
        return self._invoke("SchedulerService", "ExplainFlowRun", scheduler_pb2.FlowRunRef(id=id))

    def next_runs(
        self, pool: str, *, queues: list[str] | None = None, limit: int = 0, prefetch_seconds: float | None = None
    ) -> scheduler_pb2.ListFlowRunsResponse:
        request = scheduler_pb2.NextRunsRequest(pool=pool, queues=queues or [], limit=limit)
        _set_optional(request, prefetch_seconds=prefetch_seconds)
        return self._invoke("SchedulerService", "NextRuns", request)

    def preview_work_pool(self, pool: str, hours: float = 1.0) -> scheduler_pb2.ListFlowRunsResponse:
        return self._invoke("SchedulerService", "PreviewWorkPool", scheduler_pb2.PreviewRequest(pool=pool, hours=hours))

    def flow_run_logs(self, id: str, *, follow: bool = False) -> Any:
        return self._stream("SchedulerService", "FlowRunLogs", scheduler_pb2.LogsRequest(id=id, follow=follow))

    def apply_deployments(self, specs: list[scheduler_pb2.DeploymentSpec]) -> scheduler_pb2.ApplyDeploymentsResponse:
        """Create or update these deployments, all or none."""
        return self._invoke("SchedulerService", "ApplyDeployments", scheduler_pb2.ApplyDeploymentsRequest(deployments=specs))

    def watch_flow_run(self, id: str, *, logs: bool = True, timeout: float | None = None) -> Any:
        """The run's state changes (and log lines) so far, then as they happen, until it ends
        (or until `timeout` seconds, which raises DeadlineExceeded)."""
        request = scheduler_pb2.WatchFlowRunRequest(id=id, no_logs=not logs)
        return self._stream("SchedulerService", "WatchFlowRun", request, timeout)

    # ---------------------------------------------------------------- API keys

    def create_api_key(
        self, name: str, role: str, *, pool: str = "", expires_in_days: float | None = None
    ) -> keys_pb2.ApiKey:
        """A new key; its text is in the reply's `key`, and nowhere else ever again."""
        if role.upper() not in keys_pb2.Role.keys()[1:]:
            raise InvalidArgument(f"role: must be one of admin, operator, worker, not {role!r}", field="role")
        request = keys_pb2.CreateApiKeyRequest(name=name, role=keys_pb2.Role.Value(role.upper()), pool=pool)
        _set_optional(request, expires_in=expires_in_days)
        return self._invoke("KeyService", "CreateApiKey", request)

    def list_api_keys(self) -> keys_pb2.ListApiKeysResponse:
        return self._invoke("KeyService", "ListApiKeys", keys_pb2.ListApiKeysRequest())

    def revoke_api_key(self, name: str) -> keys_pb2.ApiKey:
        return self._invoke("KeyService", "RevokeApiKey", keys_pb2.ApiKeyRef(name=name))

    # ---------------------------------------------------------------- workers

    def list_workers(self, pool: str = "", *, limit: int = 0, offset: int = 0) -> heartbeats_pb2.ListWorkersResponse:
        """Latest heartbeat first."""
        request = heartbeats_pb2.ListWorkersRequest(pool=pool, limit=limit, offset=offset)
        return self._invoke("HeartbeatService", "ListWorkers", request)

    def delete_worker(self, name: str, pool: str) -> heartbeats_pb2.DeleteWorkerResponse:
        return self._invoke("HeartbeatService", "DeleteWorker", heartbeats_pb2.WorkerRef(name=name, pool=pool))

    def get_worker(self, name: str, pool: str) -> heartbeats_pb2.Worker:
        return self._invoke("HeartbeatService", "GetWorker", heartbeats_pb2.WorkerRef(name=name, pool=pool))


class Client(_Api):
    """Blocking client. Use as a context manager or call `close()`."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = None,
        settings: Settings | None = None,
        api_key: str | None = None,
    ):
        self.settings = settings or load_settings()
        self.address = address or self.settings.api_address
        self.timeout = timeout or self.settings.request_timeout
        self.metadata = call_metadata(self.settings, api_key)
        self.channel = open_channel(self.address, self.settings)
        self._stubs = {name: stub(self.channel) for name, stub in STUBS.items()}

    def method(self, service: str, method: str) -> Any:
        return getattr(self._stubs[service], method)

    def _invoke(self, service: str, method: str, request: Any) -> Any:
        _keyed(method, request)
        started, delay = time.monotonic(), _RETRY_FIRST_SECONDS
        while True:
            try:
                return self.method(service, method)(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                if not _again(exc, method, time.monotonic() - started, self.settings.create_retry_seconds, delay):
                    raise _translate(exc, self.address) from None
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST_SECONDS)

    def _stream(self, service: str, method: str, request: Any, timeout: float | None = None) -> Iterator[Any]:
        call = self.method(service, method)(request, timeout=timeout, metadata=self.metadata)
        try:
            yield from call
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _translate(exc, self.address) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Api):
    """asyncio client: every method returns an awaitable (streams an async iterator)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | None = None,
        settings: Settings | None = None,
        api_key: str | None = None,
    ):
        self.settings = settings or load_settings()
        self.address = address or self.settings.api_address
        self.timeout = timeout or self.settings.request_timeout
        self.metadata = call_metadata(self.settings, api_key)
        self.channel = open_aio_channel(self.address, self.settings)
        self._stubs = {name: stub(self.channel) for name, stub in STUBS.items()}

    def method(self, service: str, method: str) -> Any:
        return getattr(self._stubs[service], method)

    async def _invoke(self, service: str, method: str, request: Any) -> Any:
        _keyed(method, request)
        started, delay = time.monotonic(), _RETRY_FIRST_SECONDS
        while True:
            try:
                return await self.method(service, method)(request, timeout=self.timeout, metadata=self.metadata)
            except aio.AioRpcError as exc:
                if not _again(exc, method, time.monotonic() - started, self.settings.create_retry_seconds, delay):
                    raise _translate(exc, self.address) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST_SECONDS)

    async def _stream(self, service: str, method: str, request: Any, timeout: float | None = None) -> AsyncIterator[Any]:
        call = self.method(service, method)(request, timeout=timeout, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _translate(exc, self.address) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
