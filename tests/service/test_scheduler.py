"""SchedulerService: deployments, flow runs and push dispatch, over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator, Callable

import pytest

from shiftboss import errors
from shiftboss._wire import from_struct
from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.stream import WorkerStream
from shiftboss.v1 import scheduler_pb2
from tests.conftest import scheduler
from tests.waiting import async_wait_state

FLOW = "flows/hello.py:hello"


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[override]
    # Short intervals so liveness and leases play out within a test.
    return settings.replace(heartbeat_seconds=0.3, lease_seconds=1.0)


@asynccontextmanager
async def worker(client: AsyncClient, name: str, pool: str, **hello: object) -> AsyncIterator[WorkerStream]:
    stream = WorkerStream(client, scheduler_pb2.Hello(name=name, pool=pool, **hello))  # type: ignore[arg-type]
    await stream.open()

    async def beat() -> None:
        while True:
            stream.heartbeat()
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(beat())
    try:
        yield stream
    finally:
        beating.cancel()
        await stream.close()


async def next_dispatch(stream: WorkerStream, timeout: float = 10) -> scheduler_pb2.Dispatch:
    while True:
        message = await stream.receive(timeout)
        assert message is not None, "the stream ended"
        if message.WhichOneof("kind") == "dispatch":
            return message.dispatch


async def nothing_dispatched(stream: WorkerStream, within: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await next_dispatch(stream, within)


async def wait_state(client: AsyncClient, run_id: str, state: str, timeout: float = 10) -> scheduler_pb2.FlowRun:
    """Follow the run until it is `state` (the change arrives through the real services)."""
    return await async_wait_state(client, run_id, state, timeout=timeout)


async def start_next(client: AsyncClient, stream: WorkerStream, run_id: str) -> scheduler_pb2.Dispatch:
    """The worker's next dispatch, which must be `run_id`, acknowledged and started, once
    the run is RUNNING."""
    dispatch = await next_dispatch(stream)
    assert dispatch.run == run_id
    stream.ack(dispatch)
    stream.started(dispatch.run, dispatch.lease)
    await wait_state(client, run_id, "RUNNING")
    return dispatch


@pytest.fixture
async def pool(client: AsyncClient) -> str:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("hello", "pool", FLOW, parameters={"name": "world"})
    return "pool"


async def test_deployment_crud_and_bad_input(client: AsyncClient, pool: str) -> None:
    deployment = await client.get_deployment("hello")
    assert (deployment.pool, deployment.queue, deployment.entrypoint) == ("pool", "default", FLOW)
    with pytest.raises(errors.AlreadyExists, match="deployment 'hello' already exists"):
        await client.create_deployment("hello", "pool", FLOW)
    with pytest.raises(errors.InvalidArgument, match="entrypoint: 'nofunction' is not"):
        await client.create_deployment("x", "pool", "nofunction")
    with pytest.raises(errors.NotFound, match="work pool 'ghost' not found"):
        await client.create_deployment("x", "ghost", FLOW)
    with pytest.raises(errors.NotFound, match="work queue 'nope' not found in work pool 'pool'"):
        await client.create_deployment("x", "pool", FLOW, queue="nope")
    with pytest.raises(errors.InvalidArgument, match="cron: 'every day' is not a valid cron expression"):
        await client.create_deployment("x", "pool", FLOW, cron="every day")
    with pytest.raises(errors.InvalidArgument, match="timezone: unknown timezone 'Mars/Base'"):
        await client.create_deployment("x", "pool", FLOW, cron="0 * * * *", timezone="Mars/Base")
    with pytest.raises(errors.InvalidArgument, match="imag"):
        await client.create_deployment("x", "pool", FLOW, job_variables={"imag": "python"})
    assert [d.name for d in (await client.list_deployments()).deployments] == ["hello"]
    await client.delete_deployment("hello")
    with pytest.raises(errors.NotFound, match="deployment 'hello' not found"):
        await client.get_deployment("hello")


async def test_run_is_pushed_to_a_connected_worker(client: AsyncClient, pool: str) -> None:
    async with worker(client, "w1", pool) as stream:
        run = await client.create_flow_run("hello", parameters={"count": 3})
        dispatch = await next_dispatch(stream)
        assert dispatch.run == run.id
        assert dispatch.entrypoint == FLOW
        assert dict(dispatch.parameters) == {"name": "world", "count": 3.0}
        assert dispatch.job_configuration.fields["stream_output"].bool_value is True
        pending = await client.get_flow_run(run.id)
        assert scheduler_pb2.RunState.Name(pending.state) == "PENDING" and pending.worker == "w1"
        stream.ack(dispatch)
        stream.started(dispatch.run, dispatch.lease)
        await wait_state(client, run.id, "RUNNING")
        stream.finished(dispatch.run, dispatch.lease, "COMPLETED", exit_code=0)
        done = await wait_state(client, run.id, "COMPLETED")
        assert done.exit_code == 0
        assert [scheduler_pb2.RunState.Name(h.state) for h in done.history] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]


async def test_waiting_run_goes_out_when_a_worker_connects(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello")
    explained = await client.explain_flow_run(run.id)
    assert explained.blocker == "no_worker"
    async with worker(client, "late-worker", pool) as stream:
        assert (await next_dispatch(stream)).run == run.id


async def test_prefetch_window(client: AsyncClient, pool: str) -> None:
    soon = await client.create_flow_run("hello", start_in=5)
    later = await client.create_flow_run("hello", start_in=3600)
    async with worker(client, "w", pool, prefetch_seconds=10) as stream:
        dispatch = await next_dispatch(stream)
        assert dispatch.run == soon.id
        await nothing_dispatched(stream)
    explained = await client.explain_flow_run(later.id)
    assert explained.blocker == "not_due"


async def test_priority_waterfall_order(client: AsyncClient, pool: str) -> None:
    await client.create_work_queue("low", pool, priority=10)
    await client.create_work_queue("critical", pool, priority=1)
    low = await client.create_flow_run("hello", queue="low", start_in=0)
    default = await client.create_flow_run("hello")
    critical = await client.create_flow_run("hello", queue="critical")
    async with worker(client, "w", pool, limit=3) as stream:
        got = [(await next_dispatch(stream)).run for _ in range(3)]
    assert got == [critical.id, default.id, low.id]


async def collect(stream: WorkerStream, into: list[scheduler_pb2.Dispatch]) -> None:
    """Acknowledge and keep every dispatch a worker receives, as a real worker would."""
    while True:
        dispatch = await next_dispatch(stream, None)
        stream.ack(dispatch)
        into.append(dispatch)


async def settle(received: list[object], count: int, quiet: float = 0.5) -> None:
    """Wait until `count` items arrived, then a quiet period in which nothing more may arrive."""
    deadline = asyncio.get_running_loop().time() + 10
    while len(received) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(received)} of {count} arrived"
        await asyncio.sleep(0.02)
    await asyncio.sleep(quiet)


async def test_limits_hold_with_three_workers_racing(client: AsyncClient, pool: str) -> None:
    await client.set_work_pool_concurrency_limit(pool, 4)
    await client.create_work_queue("q2", pool, concurrency_limit=1, priority=1)
    async with worker(client, "a", pool) as a, worker(client, "b", pool) as b, worker(client, "c", pool) as c:
        streams = {"a": a, "b": b, "c": c}
        got: dict[str, list[scheduler_pb2.Dispatch]] = {name: [] for name in streams}
        tasks = [asyncio.create_task(collect(stream, got[name])) for name, stream in streams.items()]
        for _ in range(3):
            await client.create_flow_run("hello", queue="q2")
        await asyncio.gather(*(client.create_flow_run("hello") for _ in range(6)))
        try:
            everything: list[scheduler_pb2.Dispatch] = []

            def flat() -> list[scheduler_pb2.Dispatch]:
                everything[:] = [d for items in got.values() for d in items]
                return everything

            await settle(_Live(flat), 4)
            received = flat()
            assert len(received) == 4, "the pool limit of 4 was exceeded"
            assert len({d.run for d in received}) == 4
            assert [d.queue for d in received].count("q2") == 1, "queue q2's limit of 1 did not hold"
            assert sum(1 for items in got.values() if items) >= 2, "one worker took everything"
            # A finished run frees one slot: exactly one more goes out.
            first = received[0]
            holder = next(name for name, items in got.items() if first in items)
            streams[holder].finished(first.run, first.lease, "COMPLETED", exit_code=0)
            await settle(_Live(flat), 5)
            assert len(flat()) == 5
        finally:
            for task in tasks:
                task.cancel()


class _Live:
    """A length that is computed when asked."""

    def __init__(self, source):  # type: ignore[no-untyped-def]
        self.source = source

    def __len__(self) -> int:
        return len(self.source())


async def test_unacked_lease_expires_back_to_scheduled(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello")
    async with worker(client, "slow", pool) as stream:
        first = await next_dispatch(stream)
        again = await next_dispatch(stream, timeout=5)  # not acknowledged: back to SCHEDULED, then out again
        assert again.run == run.id and again.lease == first.lease + 1
        history = (await client.get_flow_run(run.id)).history
        assert [scheduler_pb2.RunState.Name(h.state) for h in history] == ["SCHEDULED", "PENDING", "SCHEDULED", "PENDING"]
        assert history[2].message == "the worker did not acknowledge it in time"
        stream.ack(again)
        stream.started(first.run, first.lease)  # stale: refused
        refused = await stream.receive(5)
        assert refused is not None and refused.WhichOneof("kind") == "refused"
        assert "stale" in refused.refused.reason


async def test_killed_worker_runs_are_reclaimed_and_redispatched_once(client: AsyncClient, pool: str) -> None:
    started = await client.create_flow_run("hello")
    waiting = await client.create_flow_run("hello")
    # The victim beats while it lives (three missed beats are under a second here, less
    # than a slow database may take to show the run RUNNING), then dies at once: its
    # stream drops and it never beats again.
    async with worker(client, "victim", pool, limit=2) as victim:
        d1, d2 = await next_dispatch(victim), await next_dispatch(victim)
        victim.ack(d1)
        victim.ack(d2)
        victim.started(started.id if d1.run == started.id else waiting.id, d1.lease if d1.run == started.id else d2.lease)
        await wait_state(client, started.id, "RUNNING")
        victim.abort()
    await wait_state(client, started.id, "CRASHED", timeout=10)
    await wait_state(client, waiting.id, "SCHEDULED", timeout=10)
    async with worker(client, "rescuer", pool) as rescuer:
        again = await next_dispatch(rescuer)
        assert again.run == waiting.id
        await nothing_dispatched(rescuer)
    workers = (await client.list_workers(pool)).workers
    assert {(w.name, w.status) for w in workers} >= {("victim", 2)}


async def test_cancel_reaches_the_worker(client: AsyncClient, pool: str) -> None:
    async with worker(client, "w", pool) as stream:
        run = await client.create_flow_run("hello")
        dispatch = await start_next(client, stream, run.id)
        cancelling = await client.cancel_flow_run(run.id)
        assert scheduler_pb2.RunState.Name(cancelling.state) == "CANCELLING"
        message = await stream.receive(5)
        assert message is not None and message.WhichOneof("kind") == "cancel" and message.cancel.run == run.id
        stream.finished(run.id, dispatch.lease, "CANCELLED")
        await wait_state(client, run.id, "CANCELLED")


async def test_prefect_work_pool_cancelling_run_gives_its_slot_back(client: AsyncClient, pool: str) -> None:
    """Prefect's work-pool scheduler counts PENDING and RUNNING against the limits, not
    CANCELLING: the next run starts while a cancelled one is still stopping. The worker's
    own limit still counts the run until its process has stopped."""
    await client.set_work_pool_concurrency_limit(pool, 1)
    async with worker(client, "busy", pool, limit=1) as busy:
        first = await client.create_flow_run("hello")
        dispatch = await start_next(client, busy, first.id)
        second = await client.create_flow_run("hello")
        await client.cancel_flow_run(first.id)
        async with worker(client, "fresh", pool, limit=1) as fresh:
            assert (await next_dispatch(fresh)).run == second.id
            await nothing_dispatched(busy, 0.3)  # its own limit of 1 still counts the cancelling run
            assert scheduler_pb2.RunState.Name((await client.get_flow_run(first.id)).state) == "CANCELLING"
            explained = await client.explain_flow_run(first.id)
            assert explained.blocker == "cancelling" and "its slot is free" in explained.message
            busy.finished(first.id, dispatch.lease, "CANCELLED")
            await wait_state(client, first.id, "CANCELLED")


async def test_cancelling_run_of_a_worker_gone_offline_ends_cancelled(client: AsyncClient, pool: str) -> None:
    """Prefect would leave it CANCELLING for good (nothing is left to report it stopped); its
    process went with the worker, so the cancel is done (see the README's differences)."""
    async with worker(client, "w", pool) as stream:
        run = await client.create_flow_run("hello")
        dispatch = await start_next(client, stream, run.id)
        await client.cancel_flow_run(run.id)
    ended = await wait_state(client, run.id, "CANCELLED")  # the worker said goodbye: OFFLINE at once
    assert "went offline" in ended.history[-1].message


async def test_illegal_transition_names_both_states(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello", start_in=3600)
    with pytest.raises(errors.FailedPrecondition, match="cannot go from SCHEDULED to RUNNING"):
        await client.set_flow_run_state(run.id, "RUNNING")
    forced = await client.set_flow_run_state(run.id, "RUNNING", force=True)
    assert scheduler_pb2.RunState.Name(forced.state) == "RUNNING"
    with pytest.raises(errors.NotFound, match="flow run 'nope' not found"):
        await client.get_flow_run("nope")


async def test_next_runs_and_preview_do_not_dispatch(client: AsyncClient, pool: str) -> None:
    await client.create_work_queue("high", pool, priority=1)
    a = await client.create_flow_run("hello")
    b = await client.create_flow_run("hello", queue="high")
    nxt = await client.next_runs(pool, limit=1)
    assert [r.id for r in nxt.flow_runs] == [b.id]
    preview = await client.preview_work_pool(pool, hours=1)
    assert [r.id for r in preview.flow_runs] == [b.id, a.id]
    assert scheduler_pb2.RunState.Name((await client.get_flow_run(a.id)).state) == "SCHEDULED"


async def test_next_runs_refuses_what_does_not_exist(client: AsyncClient, pool: str) -> None:
    await client.create_work_queue("high", pool, priority=1)
    run = await client.create_flow_run("hello", queue="high")  # the pool's runs are in the scheduler's core
    assert [r.id for r in (await client.next_runs(pool, queues=["high"])).flow_runs] == [run.id]
    with pytest.raises(errors.NotFound, match="work pool 'nope' not found"):
        await client.next_runs("nope")
    with pytest.raises(errors.NotFound, match="work queue 'low' not found in work pool 'pool'"):
        await client.next_runs(pool, queues=["high", "low"])
    with pytest.raises(errors.InvalidArgument, match="limit: must not be negative, got -1"):
        await client.next_runs(pool, limit=-1)
    await client.cancel_flow_run(run.id)
    await client.delete_work_queue("high", pool)
    with pytest.raises(errors.NotFound, match="work queue 'high' not found in work pool 'pool'"):
        await client.next_runs(pool, queues=["high"])


async def test_schedules_create_runs_once_across_restart(settings: Settings) -> None:
    settings = settings.replace(schedule_horizon_seconds=600)
    for attempt in range(2):
        mesh = Mesh(settings.replace(port=0))
        port = await mesh.start()
        try:
            async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
                if attempt == 0:
                    await client.create_work_pool("sched", "process")
                    await client.create_deployment("every-minute", "sched", FLOW, interval=60)
                deadline = asyncio.get_running_loop().time() + 10
                while len((await client.list_flow_runs(deployment="every-minute")).flow_runs) < 10:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                runs = (await client.list_flow_runs(deployment="every-minute")).flow_runs
                assert len(runs) == 10 or len(runs) == 11
                starts = [r.scheduled_start.ToDatetime() for r in runs]
                assert len(set(starts)) == len(starts)
        finally:
            await mesh.stop(0)


async def next_of(stream: WorkerStream, kind: str, timeout: float = 10) -> scheduler_pb2.SchedulerMessage:
    while True:
        message = await stream.receive(timeout)
        assert message is not None, "the stream ended"
        if message.WhichOneof("kind") == kind:
            return message


async def test_outcome_reported_after_an_outage_is_settled_before_dispatch(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello")
    lost = WorkerStream(client, scheduler_pb2.Hello(name="w", pool=pool))
    await lost.open()
    dispatch = await next_dispatch(lost)
    lost.ack(dispatch)
    await wait_state(client, run.id, "PENDING")
    lost.abort()  # the stream is gone; the flow runs to the end on the worker meanwhile
    await wait_state(client, run.id, "SCHEDULED")  # the scheduler's guess: it never started
    outcome = scheduler_pb2.Finished(run=run.id, lease=dispatch.lease, state=scheduler_pb2.COMPLETED, exit_code=0)
    async with worker(client, "w", pool, finished=[outcome]) as back:
        done = await client.get_flow_run(run.id)  # settled before the Welcome
        assert scheduler_pb2.RunState.Name(done.state) == "COMPLETED" and done.worker == "w" and done.exit_code == 0
        await nothing_dispatched(back)  # and so never sent out again


async def test_stale_outcome_leaves_the_new_holder_alone(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello")
    lost = WorkerStream(client, scheduler_pb2.Hello(name="first", pool=pool))
    await lost.open()
    old = await next_dispatch(lost)
    lost.ack(old)
    lost.abort()
    await wait_state(client, run.id, "SCHEDULED")
    async with worker(client, "second", pool) as second:
        new = await next_dispatch(second)
        second.ack(new)
        assert new.run == run.id and new.lease > old.lease
        stale = scheduler_pb2.Finished(run=run.id, lease=old.lease, state=scheduler_pb2.FAILED)
        async with worker(client, "first", pool, finished=[stale]):
            held = await client.get_flow_run(run.id)
            assert scheduler_pb2.RunState.Name(held.state) == "PENDING" and held.worker == "second"
        second.finished(run.id, new.lease, "COMPLETED", exit_code=0)
        settled = await next_of(second, "settled")
        assert (settled.settled.run, settled.settled.lease) == (run.id, new.lease)
        second.finished(run.id, old.lease, "FAILED")  # a stale lease on a live stream is refused, with its lease
        refused = await next_of(second, "refused")
        assert refused.refused.lease == old.lease and "stale" in refused.refused.reason
    assert scheduler_pb2.RunState.Name((await client.get_flow_run(run.id)).state) == "COMPLETED"


async def test_pool_and_queue_in_use_cannot_be_deleted(client: AsyncClient, pool: str) -> None:
    await client.create_work_queue("side", pool)
    await client.create_deployment("side-job", pool, FLOW, queue="side")
    with pytest.raises(errors.FailedPrecondition, match="work queue 'side' of work pool 'pool' is used by deployments 'side-job'"):
        await client.delete_work_queue("side", pool)
    with pytest.raises(errors.FailedPrecondition, match="work pool 'pool' is used by deployments 'hello', 'side-job'"):
        await client.delete_work_pool(pool)
    async with worker(client, "w", pool) as stream:
        run = await client.create_flow_run("hello")
        dispatch = await next_dispatch(stream)
        stream.ack(dispatch)
        await client.delete_deployment("hello")
        await client.delete_deployment("side-job")
        with pytest.raises(errors.FailedPrecondition, match="work pool 'pool' has 1 runs in flight"):
            await client.delete_work_pool(pool)
        stream.finished(run.id, dispatch.lease, "COMPLETED", exit_code=0)
        await wait_state(client, run.id, "COMPLETED")
    await client.delete_work_queue("side", pool)
    await client.delete_work_pool(pool)
    with pytest.raises(errors.NotFound):
        await client.get_work_pool(pool)


async def test_apply_deployments_all_or_none_and_schedule_runs_follow_the_file(client: AsyncClient, pool: str) -> None:
    spec = scheduler_pb2.DeploymentSpec(
        name="ticker", entrypoint=FLOW, pool=pool, schedules=[scheduler_pb2.ScheduleSpec(interval=600)]
    )
    bad = scheduler_pb2.DeploymentSpec(name="ticker-2", entrypoint=FLOW, pool=pool, queue="nope")
    with pytest.raises(errors.NotFound, match=r"deployments\[1\]: work queue 'nope' not found"):
        await client._invoke("SchedulerService", "ApplyDeployments", scheduler_pb2.ApplyDeploymentsRequest(deployments=[spec, bad]))
    with pytest.raises(errors.NotFound):
        await client.get_deployment("ticker")
    with pytest.raises(errors.InvalidArgument, match=r"deployments\[1\].name: 'ticker' appears more than once"):
        await client._invoke("SchedulerService", "ApplyDeployments", scheduler_pb2.ApplyDeploymentsRequest(deployments=[spec, spec]))

    reply = await client._invoke("SchedulerService", "ApplyDeployments", scheduler_pb2.ApplyDeploymentsRequest(deployments=[spec]))
    assert [a.action for a in reply.applied] == ["created"]

    async def scheduled() -> set[str]:
        runs = (await client.list_flow_runs(pool=pool)).flow_runs
        return {r.id for r in runs if r.deployment == "ticker" and scheduler_pb2.RunState.Name(r.state) in ("SCHEDULED", "LATE")}

    deadline = asyncio.get_running_loop().time() + 10
    while not (before := await scheduled()):
        assert asyncio.get_running_loop().time() < deadline, "the schedule made no runs"
        await asyncio.sleep(0.05)
    spec.schedules[0].interval = 900
    reply = await client._invoke("SchedulerService", "ApplyDeployments", scheduler_pb2.ApplyDeploymentsRequest(deployments=[spec]))
    assert [a.action for a in reply.applied] == ["updated"]
    deadline = asyncio.get_running_loop().time() + 10
    while not (after := await scheduled()):
        assert asyncio.get_running_loop().time() < deadline, "the new schedule made no runs"
        await asyncio.sleep(0.05)
    assert not before & after  # the old schedule's runs are gone, made again from the new one


async def test_watch_ends_when_a_waiting_run_is_deleted_with_its_deployment(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello", start_in=3600)
    events = client.watch_flow_run(run.id, timeout=10)
    first = await anext(events)
    assert (first.kind, scheduler_pb2.RunState.Name(first.state)) == ("state", "SCHEDULED")
    await client.delete_deployment("hello")
    last = await anext(events)
    assert scheduler_pb2.RunState.Name(last.state) == "CANCELLED" and "deleted with deployment 'hello'" in last.text
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    with pytest.raises(errors.NotFound):
        await client.get_flow_run(run.id)


async def test_runs_blocked_behind_a_limit_wait_without_admission_passes(mesh: Mesh, client: AsyncClient, pool: str) -> None:
    """A due run held back by a queue limit waits for the slot to free, not in a loop of
    admission passes: with a worker that has free slots and 200 runs blocked, the
    scheduler is idle."""
    dispatcher = scheduler(mesh).dispatcher
    await client.create_work_queue("one", pool, concurrency_limit=1)
    await client.create_deployment("limited", pool, FLOW, queue="one")
    async with worker(client, "w1", pool, limit=10) as stream:
        first = await client.create_flow_run("limited")
        await start_next(client, stream, first.id)  # it holds the queue's one slot
        for _ in range(200):
            await client.create_flow_run("limited")
        await nothing_dispatched(stream, within=0.3)  # every later run is made, and held back
        passes = dispatcher.pools[pool].turn
        cpu = time.process_time()
        await asyncio.sleep(1.0)  # the window in which a busy loop would show
        passes, spent = dispatcher.pools[pool].turn - passes, time.process_time() - cpu
    assert passes <= 2, f"{passes} admission passes in 1 s ({spent:.2f} s of CPU) while every run waited for a slot"


async def test_pausing_a_deployment_removes_its_scheduled_runs_and_resuming_makes_them_again(settings: Settings) -> None:
    """Prefect's deployment pause: the runs its schedules made that have not gone out are
    removed (runs made by hand stay); resume makes the schedule's runs again."""
    mesh = Mesh(settings.replace(port=0, schedule_horizon_seconds=600))
    port = await mesh.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            await client.create_work_pool("sched", "process")
            await client.create_deployment("ticking", "sched", FLOW, interval=60)
            by_hand = await client.create_flow_run("ticking", start_in=3600)

            async def scheduled() -> list[scheduler_pb2.FlowRun]:
                return [r for r in (await client.list_flow_runs(deployment="ticking")).flow_runs if r.id != by_hand.id]

            async def until(predicate: Callable[[list[scheduler_pb2.FlowRun]], bool]) -> list[scheduler_pb2.FlowRun]:
                deadline = asyncio.get_running_loop().time() + 10
                while not predicate(runs := await scheduled()):
                    assert asyncio.get_running_loop().time() < deadline, [r.id for r in runs]
                    await asyncio.sleep(0.05)
                return runs

            made = await until(lambda runs: len(runs) >= 10)
            await client.pause_deployment("ticking")
            assert await scheduled() == []  # gone with the pause, not left to run up to the horizon
            assert [r.id for r in (await client.list_flow_runs(deployment="ticking")).flow_runs] == [by_hand.id]
            for run in made:
                with pytest.raises(errors.NotFound):
                    await client.get_flow_run(run.id)
            await client.resume_deployment("ticking")
            again = await until(lambda runs: len(runs) >= 10)
            assert {r.scheduled_start.ToDatetime() for r in again} >= {r.scheduled_start.ToDatetime() for r in made[1:]}
    finally:
        await mesh.stop(0)


async def test_a_worker_that_ends_its_stream_is_offline_at_once_and_a_lost_one_is_not(settings: Settings) -> None:
    """Heartbeats every 30 s: a lost worker is OFFLINE after 90 s, one that says Goodbye (as
    `worker start` does when it stops) within the next flush of beats."""
    from shiftboss.v1 import heartbeats_pb2

    mesh = Mesh(settings.replace(port=0, heartbeat_seconds=30.0))
    port = await mesh.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            await client.create_work_pool("bye", "process")

            async def status(name: str) -> int:
                return (await client.get_worker(name, "bye")).status

            async def until(name: str, wanted: int) -> None:
                deadline = asyncio.get_running_loop().time() + 5
                while await status(name) != wanted:
                    assert asyncio.get_running_loop().time() < deadline, f"{name} is not {heartbeats_pb2.WorkerStatus.Name(wanted)}"
                    await asyncio.sleep(0.05)

            leaving, lost = (WorkerStream(client, scheduler_pb2.Hello(name=n, pool="bye")) for n in ("leaving", "lost"))
            for stream, name in ((leaving, "leaving"), (lost, "lost")):
                await stream.open()
                await until(name, heartbeats_pb2.ONLINE)
            lost.abort()  # as a crash or a cut network would
            leaving.goodbye()
            await leaving.close()
            await until("leaving", heartbeats_pb2.OFFLINE)
            assert await status("lost") == heartbeats_pb2.ONLINE  # still within its three beats
    finally:
        await mesh.stop(0)


async def test_a_deployment_may_leave_a_required_job_variable_to_its_runs(client: AsyncClient) -> None:
    """Prefect checks `required` when a run is made, not when its deployment is: a deployment
    may leave a required variable to each run, and a run that does not give it is refused
    naming it."""
    template = {
        "job_configuration": {"command": "{{ command }}", "env": {"WHO": "{{ name }}"}},
        "variables": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "command": {"type": "string", "default": "run"}},
        },
    }
    await client.create_work_pool("req", "process", base_job_template=template)
    await client.create_deployment("later", "req", FLOW)  # no name: left to the run
    with pytest.raises(errors.InvalidArgument, match="job_variables.name: 5 is not of type 'string'"):
        await client.create_deployment("wrong", "req", FLOW, job_variables={"name": 5})  # still checked when given
    with pytest.raises(errors.InvalidArgument, match="'name' is a required property"):
        await client.create_flow_run("later")
    run = await client.create_flow_run("later", job_variables={"name": "ada"})
    assert from_struct(run.job_configuration)["env"] == {"WHO": "ada"}
