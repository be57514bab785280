"""Retries as Prefect's RetryFailedFlows: a failed (here also a crashed) run with attempts
left is scheduled again as AwaitingRetry, and its run count says which attempt it is on."""

from __future__ import annotations

import pytest

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.service.test_scheduler import start_next, wait_state, worker

FLOW = "flows/hello.py:hello"


def name(run: scheduler_pb2.FlowRun) -> str:
    return scheduler_pb2.RunState.Name(run.state)


async def attempt(client: AsyncClient, stream: WorkerStream, run_id: str, outcome: str) -> scheduler_pb2.Dispatch:
    dispatch = await start_next(client, stream, run_id)
    stream.finished(run_id, dispatch.lease, outcome)
    return dispatch


async def test_prefect_retry_failed_flows_awaiting_retry_until_attempts_run_out(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    deployment = await client.create_deployment("flaky", "pool", FLOW, retries=2, retry_delay_seconds=0)
    assert (deployment.retries, deployment.retry_delay_seconds) == (2, 0)
    async with worker(client, "w", "pool") as stream:
        run = await client.create_flow_run("flaky")
        assert (run.retries, run.run_count) == (2, 0)
        first = await attempt(client, stream, run.id, "FAILED")
        second = await attempt(client, stream, run.id, "CRASHED")  # dispatched again at once: no delay
        assert second.lease > first.lease
        await attempt(client, stream, run.id, "FAILED")
        failed = await wait_state(client, run.id, "FAILED")
    assert (failed.state_name, failed.run_count) == ("", 3)
    assert [name_ for name_ in (scheduler_pb2.RunState.Name(h.state) for h in failed.history)] == [
        "SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "PENDING", "RUNNING", "FAILED",
    ]
    assert failed.history[3].message.startswith("AwaitingRetry: attempt 1 of 3 FAILED")
    assert failed.history[6].message.startswith("AwaitingRetry: attempt 2 of 3 CRASHED")


async def test_prefect_retry_delay_and_explain_show_the_attempt(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("flaky", "pool", FLOW, retries=1, retry_delay_seconds=3600)
    async with worker(client, "w", "pool") as stream:
        run = await client.create_flow_run("flaky")
        await attempt(client, stream, run.id, "FAILED")
        waiting = await wait_state(client, run.id, "SCHEDULED")
        assert (waiting.state_name, waiting.run_count) == ("AwaitingRetry", 1)
        delay = waiting.scheduled_start.ToDatetime() - waiting.history[-1].at.ToDatetime()
        assert 3590 < delay.total_seconds() < 3610  # from when the failure was recorded
        explained = await client.explain_flow_run(run.id)
        assert explained.message.startswith("awaiting retry: attempt 2 of 2")
        # a run may say otherwise than its deployment
        once = await client.create_flow_run("flaky", retries=0)
        await attempt(client, stream, once.id, "FAILED")
        assert (await wait_state(client, once.id, "FAILED")).run_count == 1


async def test_bad_retries_are_refused_naming_the_field(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    with pytest.raises(errors.InvalidArgument, match="retries: must be between 0 and 1000, got -1"):
        await client.create_deployment("d", "pool", FLOW, retries=-1)
    with pytest.raises(errors.InvalidArgument, match="retry_delay_seconds: must be between 0 and 604800 seconds, got -5"):
        await client.create_deployment("d", "pool", FLOW, retry_delay_seconds=-5)
    await client.create_deployment("d", "pool", FLOW)
    with pytest.raises(errors.InvalidArgument, match="retries: must be between 0 and 1000, got 5000"):
        await client.create_flow_run("d", retries=5000)
    assert list((await client.list_flow_runs()).flow_runs) == []

