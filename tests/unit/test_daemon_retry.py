"""The worker daemon answers RetryLater by sending the report again, if it still stands;
and forgets an outcome the scheduler refused or settled."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from shiftboss.v1 import scheduler_pb2
from shiftboss.workers import daemon as daemon_module
from shiftboss.workers.daemon import Daemon, Options, Run

Scheduler = scheduler_pb2.SchedulerMessage


class Outgoing:
    """The sending side of a worker stream: what the daemon sends, in order."""

    def __init__(self) -> None:
        self.sent: list[scheduler_pb2.WorkerMessage] = []
        self.arrived = asyncio.Event()

    def send(self, message: scheduler_pb2.WorkerMessage) -> None:
        self.sent.append(message)
        self.arrived.set()

    def logs(self, lines: list[scheduler_pb2.LogLine]) -> None:
        self.send(scheduler_pb2.WorkerMessage(logs=scheduler_pb2.LogBatch(lines=lines)))

    def kinds(self) -> list[tuple[str, str, int]]:
        found = [(m.WhichOneof("kind"), getattr(m, m.WhichOneof("kind"))) for m in self.sent]
        self.sent.clear()
        return [(kind, body.run, body.lease) for kind, body in found]


@pytest.fixture
def worker() -> tuple[Daemon, Outgoing]:
    daemon = Daemon(Options(pool="etl", name="w", queues=[]), console=Console(file=io.StringIO()))
    outgoing = Outgoing()
    daemon.stream = outgoing  # type: ignore[assignment]
    daemon.runs["r1"] = Run(scheduler_pb2.Dispatch(run="r1", lease=2, name="job"))
    return daemon, outgoing


def test_what_still_stands_is_sent_again(worker: tuple[Daemon, Outgoing]) -> None:
    daemon, outgoing = worker
    run = daemon.runs["r1"]
    daemon.report_again("r1", 2, "ack")
    daemon.report_again("r1", 1, "ack")  # an older lease: nothing
    daemon.report_again("r1", 2, "started")  # not started yet: nothing
    run.started_at = 1.0
    daemon.report_again("r1", 2, "started")
    assert outgoing.kinds() == [("ack", "r1", 2), ("started", "r1", 2)]
    daemon.report(run, "COMPLETED", 0, "done\x00" + "x" * 70_000)
    [(kind, body)] = [(m.WhichOneof("kind"), m.finished) for m in outgoing.sent if m.WhichOneof("kind") == "finished"]
    assert "\x00" not in body.message and len(body.message) == daemon_module.MAX_TEXT
    outgoing.sent.clear()
    daemon.report_again("r1", 2, "finished")
    assert outgoing.kinds() == [("finished", "r1", 2)]


async def test_retry_later_resends_after_a_while_and_refused_is_forgotten(
    worker: tuple[Daemon, Outgoing], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, outgoing = worker
    monkeypatch.setattr(daemon_module, "RETRY_SECONDS", 0.0)
    daemon.report(daemon.runs["r1"], "FAILED", 1, "boom")
    outgoing.sent.clear()
    outgoing.arrived.clear()
    await daemon.handle(Scheduler(retry=scheduler_pb2.RetryLater(run="r1", lease=2, kind="finished")))
    await asyncio.wait_for(outgoing.arrived.wait(), 5)
    assert outgoing.kinds() == [("finished", "r1", 2)]
    await daemon.handle(Scheduler(refused=scheduler_pb2.Refused(run="r1", lease=2, reason="stale")))
    assert daemon.unconfirmed == {} and daemon.all_settled.is_set()
    daemon.report_again("r1", 2, "finished")
    assert outgoing.sent == []
