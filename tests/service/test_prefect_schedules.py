"""Schedules as a Prefect user sees them through the API: runs kept ahead, RRULEs, anchors."""

from __future__ import annotations

import asyncio
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest

from shiftboss import errors
from shiftboss.client import AsyncClient
from shiftboss.v1 import scheduler_pb2

FLOW = "flows/hello.py:hello"


async def scheduled_runs(client: AsyncClient, deployment: str, count: int) -> list[scheduler_pb2.FlowRun]:
    """The deployment's runs once its schedule has made `count` (it does so as it is created)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        runs = list((await client.list_flow_runs(deployment=deployment)).flow_runs)
        if len(runs) >= count or asyncio.get_running_loop().time() > deadline:
            return sorted(runs, key=lambda r: r.scheduled_start.ToDatetime())
        await asyncio.sleep(0.05)


async def test_prefect_scheduler_a_daily_cron_shows_three_upcoming_runs_at_once(client: AsyncClient) -> None:
    await client.create_work_pool("sched", "process")
    await client.create_deployment("daily", "sched", FLOW, cron="0 9 * * *", timezone="Europe/Berlin")
    runs = await scheduled_runs(client, "daily", 3)
    starts = [r.scheduled_start.ToDatetime().replace(tzinfo=timezone.utc).astimezone(ZoneInfo("Europe/Berlin")) for r in runs]
    assert len(starts) == 3 and {(s.hour, s.minute) for s in starts} == {(9, 0)}
    assert [(b - a).days for a, b in zip(starts, starts[1:])] == [1, 1]


async def test_prefect_rrule_and_interval_anchor_schedules(client: AsyncClient) -> None:
    await client.create_work_pool("sched", "process")
    weekly = await client.create_deployment("weekly", "sched", FLOW, rrule="FREQ=WEEKLY;BYDAY=MO;BYHOUR=7", timezone="America/New_York")
    assert (weekly.schedules[0].rrule, weekly.schedules[0].timezone) == ("FREQ=WEEKLY;BYDAY=MO;BYHOUR=7", "America/New_York")
    runs = await scheduled_runs(client, "weekly", 3)
    local = [r.scheduled_start.ToDatetime().replace(tzinfo=timezone.utc).astimezone(ZoneInfo("America/New_York")) for r in runs]
    assert len(local) == 3 and {(t.weekday(), t.hour) for t in local} == {(0, 7)}

    hourly = await client.create_deployment("hourly", "sched", FLOW, interval=3600, anchor_date="2026-01-01T00:25:00Z")
    assert hourly.schedules[0].anchor.ToJsonString() == "2026-01-01T00:25:00Z"
    runs = await scheduled_runs(client, "hourly", 3)
    assert {r.scheduled_start.ToDatetime().minute for r in runs} == {25}

    with pytest.raises(errors.InvalidArgument, match="rrule: 'FREQ=NEVER' is not a valid RRULE"):
        await client.create_deployment("bad", "sched", FLOW, rrule="FREQ=NEVER")
    with pytest.raises(errors.InvalidArgument, match="anchor_date: an anchor date belongs to an interval schedule"):
        await client.create_deployment("bad", "sched", FLOW, cron="0 * * * *", anchor_date="2026-01-01T00:00:00Z")
    assert sorted(d.name for d in (await client.list_deployments()).deployments) == ["hourly", "weekly"]
