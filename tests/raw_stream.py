"""A worker stream of hand-made messages, for tests that send what no well-behaved worker
would: replies as they arrive (batches unpacked unless asked not to), and the status the
scheduler ended the stream with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from grpc import aio

from shiftboss.client import AsyncClient
from shiftboss.v1 import scheduler_pb2

Worker = scheduler_pb2.WorkerMessage


class RawStream:
    def __init__(
        self,
        client: AsyncClient,
        hello: scheduler_pb2.Hello | None,
        *,
        metadata: Sequence[tuple[str, str]] | None = None,
        timeout: float = 30,
        unpack: bool = True,
    ) -> None:
        self.outgoing: asyncio.Queue[scheduler_pb2.WorkerMessage | None] = asyncio.Queue()
        if hello is not None:
            self.outgoing.put_nowait(Worker(hello=hello))
        self.unpack = unpack
        self._unpacked: list[scheduler_pb2.SchedulerMessage] = []
        method = client.method("SchedulerService", "Connect")
        self.call = method(self._requests(), metadata=client.metadata if metadata is None else metadata, timeout=timeout)

    async def _requests(self) -> AsyncIterator[scheduler_pb2.WorkerMessage]:
        while (message := await self.outgoing.get()) is not None:
            yield message

    def send(self, *messages: scheduler_pb2.WorkerMessage) -> None:
        for message in messages:
            self.outgoing.put_nowait(message)

    async def read(self, timeout: float = 10) -> scheduler_pb2.SchedulerMessage:
        """The next message; AioRpcError when the stream ended with a status, AssertionError at EOF."""
        if self._unpacked:
            return self._unpacked.pop(0)
        message = await asyncio.wait_for(self.call.read(), timeout)
        assert message is not aio.EOF, "the stream ended"
        if self.unpack and message.WhichOneof("kind") == "batch":
            self._unpacked.extend(message.batch.messages)
            return await self.read(timeout)
        return message

    async def next_of(self, kind: str, timeout: float = 10) -> scheduler_pb2.SchedulerMessage:
        while True:
            message = await self.read(timeout)
            if message.WhichOneof("kind") == kind:
                return message

    async def answers(self, count: int, timeout: float = 10) -> list[scheduler_pb2.SchedulerMessage]:
        """The next `count` Settled or Refused messages, in order."""
        found = []
        while len(found) < count:
            message = await self.read(timeout)
            if message.WhichOneof("kind") in ("settled", "refused"):
                found.append(message)
        return found

    async def close(self) -> None:
        self.outgoing.put_nowait(None)
        self.call.cancel()
