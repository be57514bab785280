"""The worker side of SchedulerService.Connect, for the worker daemon and for tests.

`WorkerStream` opens the bidirectional stream with Hello, hands out what the scheduler
pushes (`receive`), and sends heartbeats, acks, outcomes, credits and logs (`send` and
its shortcuts).
"""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import datetime, timezone
from typing import Any

import grpc
from grpc import aio

from shiftboss._wire import gather, to_timestamp
from shiftboss.client import AsyncClient, _translate
from shiftboss.errors import Unavailable
from shiftboss.v1 import scheduler_pb2

__all__ = ["Redirected", "SchedulerSilent", "WorkerStream"]

Worker = scheduler_pb2.WorkerMessage
#: Turns of the event loop a write waits for more to send with it: a no-op run's Started
#: and Finished are queued two turns apart. Microseconds when idle; under load, one write
#: for many messages.
COALESCE_TURNS = 3


def fold_credits(messages: list[scheduler_pb2.WorkerMessage]) -> list[scheduler_pb2.WorkerMessage]:
    """A batch carries one Credits, the latest count, where the last one stood: an earlier
    count is out of date by the time the batch is read."""
    last = None
    for index, message in enumerate(messages):
        if message.WhichOneof("kind") == "credits":
            last = index
    if last is None:
        return messages
    return [m for i, m in enumerate(messages) if i == last or m.WhichOneof("kind") != "credits"]


class SchedulerSilent(Unavailable):
    """The scheduler at the other end stopped answering (stopped, paused, cut off)."""


class Redirected(Exception):
    """The scheduler replica that answered dispatches not this pool: another does, at
    `address` (several servers on one PostgreSQL). Connect there instead."""

    def __init__(self, redirect: scheduler_pb2.Redirect) -> None:
        super().__init__(f"redirected to {redirect.address or 'the configured address'}: {redirect.reason}")
        self.address = redirect.address
        self.replicas = list(redirect.replicas)


class WorkerStream:
    def __init__(self, client: AsyncClient, hello: scheduler_pb2.Hello) -> None:
        self.client = client
        self.hello = hello
        self.welcome: scheduler_pb2.Welcome | None = None
        self.hello.batches = True
        self._outgoing: asyncio.Queue[scheduler_pb2.WorkerMessage | None] = asyncio.Queue()
        #: The rest of a batch the scheduler sent, handed out one by one.
        self._received: collections.deque[scheduler_pb2.SchedulerMessage] = collections.deque()
        self._call: Any = None
        self._reading: asyncio.Future[Any] | None = None
        #: When the scheduler last sent anything (time.monotonic()), pings included.
        self.heard = time.monotonic()

    async def _requests(self) -> Any:
        yield Worker(hello=self.hello)
        outgoing = self._outgoing
        while True:
            message = await outgoing.get()
            if message is None:
                return
            # A few turns of the loop first, so what those turns queue (a run's Started and
            # Finished, several runs' outcomes) leaves in this write rather than in the next.
            for _ in range(COALESCE_TURNS):
                await asyncio.sleep(0)
            if outgoing.empty():
                yield message
            else:
                batch = Worker()
                batch.batch.messages.extend(fold_credits(gather(message, outgoing)))  # one copy each
                yield batch

    async def open(self, timeout: float | None = None) -> scheduler_pb2.Welcome:
        """Connect and wait for Welcome; a refused Hello raises its shiftboss error, a
        Redirect raises Redirected, and no answer within `timeout` seconds SchedulerSilent."""
        self._call = self.client.method("SchedulerService", "Connect")(self._requests(), metadata=self.client.metadata)
        try:
            first = await asyncio.wait_for(self.receive(), timeout)
        except asyncio.TimeoutError:
            self.abort()
            raise SchedulerSilent(f"the scheduler at {self.client.address} did not answer Hello within {timeout:g}s") from None
        if first is not None and first.WhichOneof("kind") == "redirect":
            raise Redirected(first.redirect)
        if first is None or first.WhichOneof("kind") != "welcome":
            raise ConnectionError(f"the scheduler answered Hello with {first!r}")
        self.welcome = first.welcome
        return self.welcome

    async def receive(self, timeout: float | None = None) -> scheduler_pb2.SchedulerMessage | None:
        """The next message from the scheduler; None when the stream ended.

        A timeout leaves the read pending rather than cancelling it (which would cancel
        the whole call); the next receive picks it up. A batch comes out message by message;
        a ping (an empty batch, see Welcome.ping_seconds) is no message, and does not put
        the timeout off."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._received:
            if self._reading is None or (self._reading.done() and self._reading.cancelled()):
                self._reading = asyncio.ensure_future(self._call.read())
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(asyncio.shield(self._reading), left)
                self._reading = None
                self.heard = time.monotonic()  # a ping counts: the server runs
            except aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED:
                    return None
                raise _translate(exc, self.client.address) from None
            if message is aio.EOF:
                return None
            if message.WhichOneof("kind") != "batch":
                return message
            self._received.extend(message.batch.messages)
        return self._received.popleft()

    def buffered(self) -> scheduler_pb2.SchedulerMessage | None:
        """The next message of a batch already read, if any: no wait, no read."""
        return self._received.popleft() if self._received else None

    def send(self, message: scheduler_pb2.WorkerMessage) -> None:
        self._outgoing.put_nowait(message)

    def heartbeat(self) -> None:
        self.send(Worker(heartbeat=scheduler_pb2.Heartbeat()))

    def ack(self, dispatch: scheduler_pb2.Dispatch) -> None:
        self.send(Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)))

    def started(self, run: str, lease: int) -> None:
        self.send(Worker(started=scheduler_pb2.Started(run=run, lease=lease, at=_now())))

    def finished(self, run: str, lease: int, state: str, exit_code: int | None = None, message: str = "") -> None:
        finished = scheduler_pb2.Finished(
            run=run, lease=lease, state=scheduler_pb2.RunState.Value(state), message=message, at=_now()
        )
        if exit_code is not None:
            finished.exit_code = exit_code
        self.send(Worker(finished=finished))

    def goodbye(self) -> None:
        """Say the worker is stopping, before `close`: it is OFFLINE at once."""
        self.send(Worker(goodbye=scheduler_pb2.Goodbye()))

    def credits(self, free: int) -> None:
        self.send(Worker(credits=scheduler_pb2.Credits(free=free)))

    def logs(self, lines: list[scheduler_pb2.LogLine]) -> None:
        self.send(Worker(logs=scheduler_pb2.LogBatch(lines=lines)))

    async def close(self, timeout: float = 5.0) -> None:
        """End our side after what is queued has been sent, and wait for the scheduler to
        close its side (it has then handled all of it); the scheduler keeps our runs until
        we come back or go OFFLINE."""
        self._outgoing.put_nowait(None)
        if self._call is None:
            return
        try:
            async with asyncio.timeout(timeout):
                if self._reading is not None:
                    await self._reading
                while await self._call.read() is not aio.EOF:
                    pass
        except (TimeoutError, aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self._call.cancel()

    def abort(self) -> None:
        """Drop the stream at once, as a crash would."""
        if self._call is not None:
            self._call.cancel()


def _now() -> Any:
    return to_timestamp(datetime.now(timezone.utc))
