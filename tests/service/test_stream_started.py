"""Started acknowledges a dispatch: a worker that starts a run at once sends no Ack, and its
run's lease holds as if it had. Ack still serves a worker that takes a run and starts it
later, and a worker that sends Ack then Started, as older workers do, is served as before.
Every report in a batch is answered on its own, a forged or stale one with Refused, the
others with what they would get alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shiftboss.client import AsyncClient
from shiftboss.settings import Settings
from shiftboss.v1 import scheduler_pb2
from tests.raw_stream import RawStream
from tests.waiting import async_wait_state

FLOW = "flows/hello.py:hello"
Worker = scheduler_pb2.WorkerMessage
Hello = scheduler_pb2.Hello


def started(dispatch: scheduler_pb2.Dispatch, lease: int | None = None) -> scheduler_pb2.WorkerMessage:
    return Worker(started=scheduler_pb2.Started(run=dispatch.run, lease=dispatch.lease if lease is None else lease))


def finished(dispatch: scheduler_pb2.Dispatch, lease: int | None = None) -> scheduler_pb2.WorkerMessage:
    lease = dispatch.lease if lease is None else lease
    return Worker(finished=scheduler_pb2.Finished(run=dispatch.run, lease=lease, state=scheduler_pb2.COMPLETED, exit_code=0))


def history(run: scheduler_pb2.FlowRun) -> list[str]:
    return [scheduler_pb2.RunState.Name(h.state) for h in run.history]


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[override]
    # Short leases: a dispatch nobody acknowledges is soon back in its queue.
    return settings.replace(lease_seconds=1.0)


@pytest.fixture
async def pool(client: AsyncClient) -> AsyncIterator[str]:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("hello", "pool", FLOW)
    yield "pool"


async def dispatched(stream: RawStream, count: int) -> dict[str, scheduler_pb2.Dispatch]:
    found: dict[str, scheduler_pb2.Dispatch] = {}
    while len(found) < count:
        dispatch = (await stream.next_of("dispatch")).dispatch
        found[dispatch.run] = dispatch
    return found


@pytest.mark.parametrize("acknowledged_by", ["started", "ack"])
async def test_started_or_ack_alone_holds_the_lease_and_settles(client: AsyncClient, pool: str, acknowledged_by: str) -> None:
    """Started alone: a run that starts at once. Ack alone: a run taken now, started later."""
    taken, ignored = await client.create_flow_run("hello"), await client.create_flow_run("hello")
    stream = RawStream(client, Hello(name="raw", pool="pool", limit=2, batches=True))
    try:
        await stream.next_of("welcome")
        leases = await dispatched(stream, 2)
        if acknowledged_by == "started":
            stream.send(started(leases[taken.id]))  # no Ack
            assert (await async_wait_state(client, taken.id, "RUNNING")).worker == "raw"
        else:
            stream.send(Worker(ack=scheduler_pb2.Ack(run=taken.id, lease=leases[taken.id].lease)))
        # The run nobody acknowledged lapses and is dispatched again, under a new lease; the
        # acknowledged one stays this worker's all the while.
        again = (await stream.next_of("dispatch")).dispatch
        assert again.run == ignored.id and again.lease > leases[ignored.id].lease
        run = await client.get_flow_run(taken.id)
        expected = "RUNNING" if acknowledged_by == "started" else "PENDING"
        assert (scheduler_pb2.RunState.Name(run.state), run.worker) == (expected, "raw")
        if acknowledged_by == "ack":
            stream.send(started(leases[taken.id]))
        stream.send(finished(leases[taken.id]))
        [answer] = await stream.answers(1)
        assert answer.WhichOneof("kind") == "settled"
        assert (answer.settled.run, answer.settled.lease) == (taken.id, leases[taken.id].lease)
        done = await async_wait_state(client, taken.id, "COMPLETED")
        assert history(done) == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"] and done.exit_code == 0
    finally:
        await stream.close()


async def test_a_worker_sending_ack_then_started_is_served_as_before(client: AsyncClient, pool: str) -> None:
    run = await client.create_flow_run("hello")
    stream = RawStream(client, Hello(name="old", pool="pool"))  # no batches: an older worker
    try:
        await stream.next_of("welcome")
        dispatch = (await stream.next_of("dispatch")).dispatch
        stream.send(Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)))
        stream.send(started(dispatch))
        await async_wait_state(client, run.id, "RUNNING")
        stream.send(Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)))  # a repeat: a no-op
        stream.send(finished(dispatch))
        answer = await stream.read()  # one message each, never a batch, to a worker that did not ask for them
        assert answer.WhichOneof("kind") == "settled" and answer.settled.run == run.id
        done = await async_wait_state(client, run.id, "COMPLETED")
        assert history(done) == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"] and done.worker == "old"
    finally:
        await stream.close()


async def test_each_report_of_a_batch_is_answered_on_its_own(client: AsyncClient, pool: str) -> None:
    await client.create_work_pool("other", "process")
    await client.create_deployment("elsewhere", "other", FLOW)
    mine, stale = await client.create_flow_run("hello"), await client.create_flow_run("hello")
    theirs = await client.create_flow_run("elsewhere")
    neighbour = RawStream(client, Hello(name="n", pool="other", batches=True))
    stream = RawStream(client, Hello(name="raw", pool="pool", limit=2, batches=True))
    try:
        await neighbour.next_of("welcome")
        other = (await neighbour.next_of("dispatch")).dispatch
        neighbour.send(started(other))
        await async_wait_state(client, theirs.id, "RUNNING")
        await stream.next_of("welcome")
        leases = await dispatched(stream, 2)
        ghost = scheduler_pb2.Dispatch(run=str(uuid.uuid4()), lease=1)
        batch = [
            started(leases[mine.id]),
            finished(other),  # another pool's run, with its real lease
            started(leases[stale.id], leases[stale.id].lease + 7),  # a lease this run never had
            finished(ghost),  # no such run
            Worker(started=scheduler_pb2.Started(run="not a run id", lease=1)),  # malformed
            finished(leases[mine.id]),
        ]
        stream.send(Worker(batch=scheduler_pb2.WorkerBatch(messages=batch)))
        answers = await stream.answers(5)
        by_run = {getattr(a, a.WhichOneof("kind")).run: a for a in answers}
        assert by_run[mine.id].WhichOneof("kind") == "settled" and by_run[mine.id].settled.lease == leases[mine.id].lease
        for refused, lease in ((other.run, other.lease), (stale.id, leases[stale.id].lease + 7), (ghost.run, 1), ("not a run id", 1)):
            answer = by_run[refused]
            assert answer.WhichOneof("kind") == "refused" and answer.refused.lease == lease, answer
        # Another pool's run is refused in the words of a run that does not exist.
        assert by_run[other.run].refused.reason.replace(other.run, "?").replace(f"lease: {other.lease} ", "lease: L ") == (
            by_run[ghost.run].refused.reason.replace(ghost.run, "?").replace("lease: 1 ", "lease: L ")
        )
        assert "is not a flow run id" in by_run["not a run id"].refused.reason
        assert history(await async_wait_state(client, mine.id, "COMPLETED"))[-2:] == ["RUNNING", "COMPLETED"]
        theirs_now = await client.get_flow_run(theirs.id)
        assert (scheduler_pb2.RunState.Name(theirs_now.state), theirs_now.worker) == ("RUNNING", "n")
        # Never started: a dispatch not acknowledged, whose lease lapses (or has lapsed) as usual.
        assert scheduler_pb2.RunState.Name((await client.get_flow_run(stale.id)).state) in ("PENDING", "SCHEDULED")
    finally:
        await stream.close()
        await neighbour.close()
