"""List calls as Prefect's filters: runs of a deployment (also a deleted one), limit and offset."""

from __future__ import annotations

import pytest

from shiftboss import errors
from shiftboss.client import AsyncClient

FLOW = "flows/hello.py:hello"


async def test_prefect_flow_run_filters_runs_of_a_deleted_deployment_limit_and_offset(client: AsyncClient) -> None:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("gone", "pool", FLOW)
    made = [await client.create_flow_run("gone", start_in=3600 + i) for i in range(3)]
    for run in made[:2]:
        await client.cancel_flow_run(run.id)
    await client.delete_deployment("gone")  # its waiting run goes with it; the ended ones stay
    listed = (await client.list_flow_runs(deployment="gone")).flow_runs
    assert [r.id for r in listed] == [made[1].id, made[0].id] and listed[0].name == made[1].name
    assert [r.id for r in (await client.list_flow_runs(deployment="gone", limit=1, offset=1)).flow_runs] == [made[0].id]
    assert [r.id for r in (await client.list_flow_runs(deployment="gone", states=["CANCELLED"], offset=2)).flow_runs] == []
    with pytest.raises(errors.InvalidArgument, match="offset: must not be negative, got -2"):
        await client.list_flow_runs(offset=-2)
    with pytest.raises(errors.NotFound, match="deployment 'never' not found"):
        await client.list_flow_runs(deployment="never")
