"""Batches on the worker stream: what is queued goes out as one message, and each message in
it is handled as if it came alone. Read off the wire with a raw stream, not WorkerStream,
so that the test sees exactly what travels."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from collections.abc import AsyncIterator

import pytest
from grpc import aio

from shiftboss._wire import BATCH_BYTES, gather, to_timestamp
from shiftboss.client import AsyncClient
from shiftboss.stream import fold_credits
from shiftboss.v1 import scheduler_pb2
from tests.waiting import async_wait_state

FLOW = "flows/hello.py:hello"
Worker = scheduler_pb2.WorkerMessage


class RawStream:
    """Connect with hand-made messages; replies as they arrive, batches left whole."""

    def __init__(self, client: AsyncClient, hello: scheduler_pb2.Hello) -> None:
        self.outgoing: asyncio.Queue[scheduler_pb2.WorkerMessage | None] = asyncio.Queue()
        self.outgoing.put_nowait(Worker(hello=hello))
        self.call = client.method("SchedulerService", "Connect")(self._requests(), metadata=client.metadata, timeout=30)

    async def _requests(self) -> AsyncIterator[scheduler_pb2.WorkerMessage]:
        while (message := await self.outgoing.get()) is not None:
            yield message

    def send(self, message: scheduler_pb2.WorkerMessage) -> None:
        self.outgoing.put_nowait(message)

    async def read(self, timeout: float = 10) -> scheduler_pb2.SchedulerMessage:
        message = await asyncio.wait_for(self.call.read(), timeout)
        assert message is not aio.EOF, "the stream ended"
        return message

    async def close(self) -> None:
        self.outgoing.put_nowait(None)
        self.call.cancel()


@pytest.fixture
async def pool(client: AsyncClient) -> str:
    await client.create_work_pool("pool", "process")
    await client.create_deployment("hello", "pool", FLOW)
    return "pool"


async def dispatches_on_connect(client: AsyncClient, batches: bool) -> list[scheduler_pb2.SchedulerMessage]:
    """Three runs wait; a worker connects and they are admitted in one round."""
    ids = {(await client.create_flow_run("hello")).id for _ in range(3)}
    stream = RawStream(client, scheduler_pb2.Hello(name="raw", pool="pool", batches=batches))
    try:
        assert (await stream.read()).WhichOneof("kind") == "welcome"
        messages, received = [], set()
        while received != ids:
            message = await stream.read()
            messages.append(message)
            inner = message.batch.messages if message.WhichOneof("kind") == "batch" else [message]
            received.update(m.dispatch.run for m in inner)
        return messages
    finally:
        await stream.close()


async def test_runs_admitted_together_travel_as_one_batch(client: AsyncClient, pool: str) -> None:
    [message] = await dispatches_on_connect(client, batches=True)
    assert message.WhichOneof("kind") == "batch"
    assert [m.WhichOneof("kind") for m in message.batch.messages] == ["dispatch"] * 3


async def test_a_worker_that_does_not_read_batches_gets_one_message_each(client: AsyncClient, pool: str) -> None:
    messages = await dispatches_on_connect(client, batches=False)
    assert [m.WhichOneof("kind") for m in messages] == ["dispatch"] * 3


async def test_a_batch_from_the_worker_is_handled_message_by_message(client: AsyncClient, pool: str) -> None:
    done, stale = await client.create_flow_run("hello"), await client.create_flow_run("hello")
    stream = RawStream(client, scheduler_pb2.Hello(name="raw", pool="pool", limit=2))
    try:
        await stream.read()  # Welcome
        leases = {}
        while len(leases) < 2:
            message = await stream.read()
            if message.WhichOneof("kind") == "dispatch":
                leases[message.dispatch.run] = message.dispatch.lease
        at = to_timestamp(datetime.now(timezone.utc))
        stream.send(Worker(batch=scheduler_pb2.WorkerBatch(messages=[
            Worker(ack=scheduler_pb2.Ack(run=done.id, lease=leases[done.id])),
            Worker(started=scheduler_pb2.Started(run=done.id, lease=leases[done.id], at=at)),
            Worker(finished=scheduler_pb2.Finished(run=done.id, lease=leases[done.id], state=scheduler_pb2.COMPLETED, exit_code=0)),
            # One bad message in the batch is refused on its own; the others stand.
            Worker(started=scheduler_pb2.Started(run=stale.id, lease=leases[stale.id] + 7, at=at)),
        ])))
        answers = {}
        while len(answers) < 2:
            message = await stream.read()
            kind = message.WhichOneof("kind")
            if kind in ("settled", "refused"):
                answers[kind] = getattr(message, kind)
        assert answers["settled"].run == done.id
        assert answers["refused"].run == stale.id and "stale" in answers["refused"].reason
        completed = await async_wait_state(client, done.id, "COMPLETED", timeout=10)
        assert completed.exit_code == 0 and completed.worker == "raw"
        assert scheduler_pb2.RunState.Name((await client.get_flow_run(stale.id)).state) == "PENDING"
    finally:
        await stream.close()


@pytest.mark.parametrize(
    ("inner", "error"),
    [
        (Worker(batch=scheduler_pb2.WorkerBatch(messages=[Worker(heartbeat=scheduler_pb2.Heartbeat())])),
         "batch: a batch holds single messages, not another batch"),
        (Worker(hello=scheduler_pb2.Hello(name="again", pool="pool")), "hello: the stream already began with Hello; send it once"),
    ],
    ids=["batch-in-batch", "hello-in-batch"],
)
async def test_a_batch_holding_what_it_may_not_ends_the_stream(
    client: AsyncClient, pool: str, inner: scheduler_pb2.WorkerMessage, error: str
) -> None:
    stream = RawStream(client, scheduler_pb2.Hello(name="raw", pool="pool"))
    try:
        await stream.read()  # Welcome
        stream.send(Worker(batch=scheduler_pb2.WorkerBatch(messages=[Worker(heartbeat=scheduler_pb2.Heartbeat()), inner])))
        with pytest.raises(aio.AioRpcError) as caught:
            await stream.read()
        assert caught.value.code().name == "INVALID_ARGUMENT"
        assert caught.value.details() == error
    finally:
        await stream.close()
    # The server goes on: the same worker name connects again.
    again = RawStream(client, scheduler_pb2.Hello(name="raw", pool="pool"))
    try:
        assert (await again.read()).WhichOneof("kind") == "welcome"
    finally:
        await again.close()


def test_gather_stops_at_the_byte_limit_and_at_the_end_marker() -> None:
    async def scenario() -> None:
        queue: asyncio.Queue[scheduler_pb2.LogLine | None] = asyncio.Queue()
        lines = [scheduler_pb2.LogLine(run=str(i), text="x" * (BATCH_BYTES // 4)) for i in range(6)]
        for line in lines[1:]:
            queue.put_nowait(line)
        queue.put_nowait(None)
        first = gather(lines[0], queue)
        assert [m.run for m in first] == ["0", "1", "2"]  # a fourth would pass BATCH_BYTES
        assert [m.run for m in gather(queue.get_nowait(), queue)] == ["3", "4", "5"]  # type: ignore[union-attr]
        assert queue.get_nowait() is None  # the end marker stays, to end the stream next
        big = scheduler_pb2.LogLine(text="y" * (2 * BATCH_BYTES))
        assert gather(big, queue) == [big]  # one message over the limit still goes, alone

    asyncio.run(scenario())


def test_a_worker_batch_carries_one_credits_the_latest() -> None:
    def credits(free: int) -> scheduler_pb2.WorkerMessage:
        return Worker(credits=scheduler_pb2.Credits(free=free))

    done = Worker(finished=scheduler_pb2.Finished(run="a", lease=1, state=scheduler_pb2.COMPLETED))
    beat = Worker(heartbeat=scheduler_pb2.Heartbeat())
    folded = fold_credits([credits(3), done, credits(1), beat, credits(0)])
    assert folded == [done, beat, credits(0)]
    assert fold_credits([done, beat]) == [done, beat]
