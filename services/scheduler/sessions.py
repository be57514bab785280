"""Workers connected over the stream, as the scheduler sees them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from shiftboss.errors import ResourceExhausted, ShiftbossError
from shiftboss.v1 import scheduler_pb2

#: Messages waiting for a worker that does not read them; past this its stream is ended
#: rather than the server's memory filled.
MAX_OUTBOX = 65_536


@dataclass(eq=False)
class WorkerSession:
    """One open Connect stream. Messages to the worker go through `outbox`."""

    key: str  # "pool/name": what runs record as their worker
    id: str
    name: str
    pool: str
    queues: list[str] | None  # None: every queue of the pool
    limit: int  # 0: no cap of its own
    prefetch: float
    once: bool = False
    #: It reads SchedulerBatch (Hello.batches).
    batches: bool = False
    outbox: asyncio.Queue[scheduler_pb2.SchedulerMessage | None] = field(default_factory=asyncio.Queue)
    #: Run keys (core seq) it holds: PENDING, RUNNING or CANCELLING on it.
    held: set[int] = field(default_factory=set)
    #: Lease of each run this stream said it took (Ack or Started) and has not finished:
    #: what it said, whether or not the database could record it yet.
    acked: dict[str, int] = field(default_factory=dict)
    #: Free slots the worker reported with Credits; None until it does.
    credits: int | None = None
    draining: bool = False
    closed: bool = False
    #: The worker said Goodbye: it is stopping, not lost.
    goodbye: bool = False
    #: Why the server ended the stream, raised to the worker as the call's status.
    failure: ShiftbossError | None = None
    #: When a message last went out (time.monotonic()): an idle stream is pinged.
    last_sent: float = field(default_factory=time.monotonic)

    def free(self) -> int | None:
        """Runs it may still take now; None means no cap."""
        if self.draining or self.closed:
            return 0
        caps = []
        if self.limit:
            caps.append(self.limit - len(self.held))
        if self.credits is not None:
            caps.append(self.credits)
        return max(0, min(caps)) if caps else None

    def send(self, message: scheduler_pb2.SchedulerMessage) -> None:
        if self.closed:
            return
        if self.outbox.qsize() >= MAX_OUTBOX:
            self.end(ResourceExhausted(f"worker {self.key} does not read its stream: {MAX_OUTBOX} messages wait for it"))
            return
        self.outbox.put_nowait(message)

    def end(self, failure: ShiftbossError) -> None:
        """Close the stream with this status at once: what still waits for the worker is dropped."""
        self.failure = failure
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.closed = True
        self.outbox.put_nowait(None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)


def worker_key(pool: str, name: str) -> str:
    return f"{pool}/{name}"
