"""A flow gets its run's own token, not its worker's key, and secret job variables are
sealed at rest and masked in every reply: shown over real streams on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from shiftboss._wire import from_struct
from shiftboss.client import AsyncClient
from shiftboss.errors import InvalidArgument, PermissionDenied, Unauthenticated
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.v1 import scheduler_pb2
from tests.conftest import scheduler
from tests.raw_stream import RawStream
from tests.waiting import async_wait_state

FLOW = "flows/hello.py:hello"
Worker = scheduler_pb2.WorkerMessage
MASK = "********"
SECRET = "hunter2-correct-horse"
TEMPLATE: dict[str, Any] = {
    "job_configuration": {
        "command": "{{ command }}",
        "env": {"DB_PASSWORD": "{{ password }}", "MODE": "{{ mode }}"},
        "url": "postgres://app:{{ password }}@db/app",
    },
    "variables": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "default": ""},
            "mode": {"type": "string", "default": "batch"},
            "password": {"type": "string", "format": "password"},
            "token": {"type": "integer", "writeOnly": True},
        },
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[override]
    # Short leases, so that a run leased to a worker that went away is soon back in its queue.
    return settings.replace(lease_seconds=1.0)


@pytest.fixture
async def worker(secured: Mesh, admin: AsyncClient) -> AsyncIterator[AsyncClient]:
    """Pools `etl` (a template with secret variables) and `ml`, a deployment in each, and a
    client holding etl's worker key."""
    await admin.create_work_pool("etl", "process", base_job_template=TEMPLATE)
    await admin.create_work_pool("ml", "process")
    await admin.create_deployment("etl-job", "etl", FLOW, job_variables={"password": SECRET, "token": 424242})
    await admin.create_deployment("ml-job", "ml", FLOW)
    key = (await admin.create_api_key("etl-bot", "worker", pool="etl")).key
    async with AsyncClient(secured.settings.api_address, timeout=10, api_key=key) as client:
        yield client


async def dispatched(stream: RawStream, admin: AsyncClient, deployment: str, **run: Any) -> scheduler_pb2.Dispatch:
    made = await admin.create_flow_run(deployment, **run)
    dispatch = (await stream.next_of("dispatch")).dispatch
    assert dispatch.run == made.id
    return dispatch


def as_run(secured: Mesh, token: str) -> AsyncClient:
    return AsyncClient(secured.settings.api_address, timeout=10, api_key=token)


async def test_a_run_token_reaches_its_own_run_until_the_run_ends(secured: Mesh, admin: AsyncClient, worker: AsyncClient) -> None:
    stream = RawStream(worker, scheduler_pb2.Hello(name="w1", pool="etl", limit=2))
    await stream.next_of("welcome")
    mine = await dispatched(stream, admin, "etl-job")
    other = await dispatched(stream, admin, "etl-job")
    elsewhere = await admin.create_flow_run("ml-job", start_in=3600)
    assert mine.run_token.startswith("sbr_") and mine.run_token != other.run_token

    async with as_run(secured, mine.run_token) as flow:
        assert (await flow.get_flow_run(mine.run)).id == mine.run
        for attempt in (lambda: flow.get_flow_run(other.run), lambda: flow.get_flow_run(elsewhere.id)):
            with pytest.raises(PermissionDenied, match="id: a run token reaches its own flow run only"):
                await attempt()
        with pytest.raises(PermissionDenied, match="a run token may call only GetFlowRun, SetFlowRunState, WriteFlowRunLogs"):
            await flow.list_flow_runs()
        with pytest.raises(PermissionDenied, match="not CreateFlowRun"):
            await flow.create_flow_run("etl-job")
        with pytest.raises(PermissionDenied, match="force: a run token follows the transition rules"):
            await flow.set_flow_run_state(mine.run, "COMPLETED", force=True)
        with pytest.raises(PermissionDenied, match="state: a run token may report .* not CANCELLED"):
            await flow.set_flow_run_state(mine.run, "CANCELLED")

        assert (await flow.write_flow_run_logs(mine.run, ["from the flow itself"])).written == 1
        assert (await flow.set_flow_run_state(mine.run, "RUNNING")).state == scheduler_pb2.RUNNING
        assert (await flow.set_flow_run_state(mine.run, "COMPLETED")).state == scheduler_pb2.COMPLETED
        lines = [line.text async for line in admin.flow_run_logs(mine.run)]
        assert lines == ["from the flow itself"]
        # Its run has ended: the token is spent.
        with pytest.raises(Unauthenticated, match="no longer valid: the run has ended"):
            await flow.get_flow_run(mine.run)

    forged = other.run_token[:-4] + ("AAAA" if not other.run_token.endswith("AAAA") else "BBBB")
    swapped = f"sbr_{mine.run}_{other.lease}_{other.run_token.rsplit('_', 1)[1]}"
    for token in (forged, swapped):
        async with as_run(secured, token) as flow:
            with pytest.raises(Unauthenticated, match="invalid run token"):
                await flow.get_flow_run(other.run)
    await stream.close()


async def test_a_run_token_of_an_earlier_lease_is_refused(secured: Mesh, admin: AsyncClient, worker: AsyncClient) -> None:
    first = RawStream(worker, scheduler_pb2.Hello(name="gone", pool="etl"))
    dispatch = await dispatched(first, admin, "etl-job")
    await first.close()  # never started: the run goes back to its queue, and out again
    again = RawStream(worker, scheduler_pb2.Hello(name="next", pool="etl"))
    second = (await again.next_of("dispatch", timeout=30)).dispatch
    assert second.run == dispatch.run and second.lease > dispatch.lease
    async with as_run(secured, dispatch.run_token) as stale, as_run(secured, second.run_token) as current:
        with pytest.raises(Unauthenticated, match="leased again"):
            await stale.get_flow_run(dispatch.run)
        assert (await current.get_flow_run(dispatch.run)).id == dispatch.run
    await again.close()


async def stored_text(secured: Mesh) -> str:
    """Every deployment and run row as the database holds them."""
    db = scheduler(secured).db
    async with db.reading() as session:
        rows = (await session.execute(text("SELECT job_variables FROM deployments"))).all()
        rows += (await session.execute(text("SELECT job_variables, job_configuration FROM flow_runs"))).all()
    return json.dumps([[str(v) for v in row] for row in rows])


async def test_secret_job_variables_are_sealed_at_rest_and_masked_in_replies(
    secured: Mesh, admin: AsyncClient, worker: AsyncClient
) -> None:
    deployment = await admin.get_deployment("etl-job")
    assert from_struct(deployment.job_variables) == {"password": MASK, "token": MASK}
    stream = RawStream(worker, scheduler_pb2.Hello(name="w1", pool="etl"))
    dispatch = await dispatched(stream, admin, "etl-job", job_variables={"mode": "stream"})
    # The worker alone gets the values, and what to mask in the run's logs.
    configuration = from_struct(dispatch.job_configuration)
    assert configuration["env"] == {"DB_PASSWORD": SECRET, "MODE": "stream"}
    assert configuration["url"] == f"postgres://app:{SECRET}@db/app"
    assert set(dispatch.masked) == {SECRET, "424242"}

    run = await admin.get_flow_run(dispatch.run)
    shown = from_struct(run.job_configuration)
    assert shown["env"] == {"DB_PASSWORD": MASK, "MODE": "stream"} and shown["url"] == f"postgres://app:{MASK}@db/app"
    listed = (await admin.list_flow_runs(pool="etl")).flow_runs
    assert SECRET not in str(listed) and SECRET not in str(run) and SECRET not in str(await admin.list_deployments())
    async with as_run(secured, dispatch.run_token) as flow:  # a flow writing its secret in its logs
        await flow.write_flow_run_logs(dispatch.run, [f"connecting with {SECRET}"])
    assert [line.text async for line in admin.flow_run_logs(dispatch.run)] == [f"connecting with {MASK}"]
    stored = await stored_text(secured)
    assert SECRET not in stored and "424242" not in stored and "$sealed" in stored

    # A document read back and applied again keeps the secret; the same value changes nothing.
    await admin.update_deployment("etl-job", job_variables={"password": MASK, "token": 424242})
    again = await dispatched(stream, admin, "etl-job")
    assert from_struct(again.job_configuration)["env"]["DB_PASSWORD"] == SECRET
    spec = scheduler_pb2.DeploymentSpec(name="etl-job", pool="etl", entrypoint=FLOW)
    spec.job_variables.update({"password": SECRET, "token": 424242})
    assert [a.action for a in (await admin.apply_deployments([spec])).applied] == ["unchanged"]
    await stream.close()


async def test_secret_values_are_never_echoed_in_errors_and_have_no_default(admin: AsyncClient, worker: AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await admin.create_deployment("bad", "etl", FLOW, job_variables={"token": "not-a-number-s3cr3t"})
    assert "job_variables.token: the secret value does not fit its schema (type 'integer')" in refused.value.message
    assert "s3cr3t" not in refused.value.message
    with pytest.raises(InvalidArgument, match=r"job_variables.password: an object whose only key is '\$sealed' is reserved"):
        await admin.create_flow_run("etl-job", job_variables={"password": {"$sealed": "x"}})
    template = json.loads(json.dumps(TEMPLATE))
    template["variables"]["properties"]["password"]["default"] = "letmein"
    with pytest.raises(InvalidArgument, match=r"variables.properties.password.default: a secret variable has no default"):
        await admin.create_work_pool("leaky", "process", base_job_template=template)
