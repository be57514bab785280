"""Waiting for a flow run to reach a state: on the run's own event stream (WatchFlowRun), not by polling."""

from __future__ import annotations

import contextlib

from shiftboss import errors
from shiftboss.client import AsyncClient, Client
from shiftboss.v1 import scheduler_pb2


def _name(state: int) -> str:
    return scheduler_pb2.RunState.Name(state)


class _Changes:
    """The stream replays the run's history first; only the changes after the `known` ones count."""

    def __init__(self, run: scheduler_pb2.FlowRun, wanted: tuple[str, ...]) -> None:
        self.skip = len(run.history)
        self.wanted = wanted

    def reached(self, event: scheduler_pb2.FlowRunEvent) -> bool:
        if event.kind != "state":
            return False
        if self.skip:
            self.skip -= 1
            return False
        return _name(event.state) in self.wanted


def wait_state(client: Client, run_id: str, *wanted: str, timeout: float = 20.0) -> scheduler_pb2.FlowRun:
    """The run once its state is one of `wanted`; AssertionError after `timeout` seconds."""
    run = client.get_flow_run(run_id)
    if _name(run.state) in wanted:
        return run
    changes = _Changes(run, wanted)
    try:
        for event in client.watch_flow_run(run_id, logs=False, timeout=timeout):
            if changes.reached(event):
                return client.get_flow_run(run_id)
    except errors.DeadlineExceeded:
        pass
    run = client.get_flow_run(run_id)
    if _name(run.state) in wanted:
        return run
    raise AssertionError(f"flow run {run_id} is {_name(run.state)}, not {' or '.join(wanted)}, after {timeout:g}s")


async def async_wait_state(client: AsyncClient, run_id: str, *wanted: str, timeout: float = 10.0) -> scheduler_pb2.FlowRun:
    """`wait_state` for the asyncio client."""
    run = await client.get_flow_run(run_id)
    if _name(run.state) in wanted:
        return run
    changes = _Changes(run, wanted)
    try:
        async with contextlib.aclosing(client.watch_flow_run(run_id, logs=False, timeout=timeout)) as events:
            async for event in events:
                if changes.reached(event):
                    return await client.get_flow_run(run_id)
    except errors.DeadlineExceeded:
        pass
    run = await client.get_flow_run(run_id)
    if _name(run.state) in wanted:
        return run
    raise AssertionError(f"flow run {run_id} is {_name(run.state)}, not {' or '.join(wanted)}, after {timeout:g}s")
