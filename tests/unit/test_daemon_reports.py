"""What the worker daemon reports is what the scheduler takes: no NUL, no text past its
limit, so an outcome is never refused for its message; and an outcome the scheduler
refused is forgotten rather than sent again for ever."""

from __future__ import annotations

import io

from rich.console import Console

from shiftboss.v1 import scheduler_pb2
from shiftboss.workers import daemon as daemon_module
from shiftboss.workers.daemon import Daemon, Options, Run


class Outgoing:
    """The sending side of a worker stream: what the daemon sends, in order."""

    def __init__(self) -> None:
        self.sent: list[scheduler_pb2.WorkerMessage] = []

    def send(self, message: scheduler_pb2.WorkerMessage) -> None:
        self.sent.append(message)

    def logs(self, lines: list[scheduler_pb2.LogLine]) -> None:
        self.send(scheduler_pb2.WorkerMessage(logs=scheduler_pb2.LogBatch(lines=lines)))


async def test_outcomes_and_log_lines_are_sendable_and_a_refused_outcome_is_forgotten() -> None:
    daemon = Daemon(Options(pool="etl", name="w", queues=[]), console=Console(file=io.StringIO()))
    outgoing = Outgoing()
    daemon.stream = outgoing  # type: ignore[assignment]
    run = daemon.runs["r1"] = Run(scheduler_pb2.Dispatch(run="r1", lease=2, name="job"))
    daemon.log_line("r1", "stdout", "a\x00b")
    daemon.report(run, "FAILED", 1, "boom\x00" + "x" * 70_000)
    sent = {m.WhichOneof("kind"): m for m in outgoing.sent}
    assert [line.text for line in sent["logs"].logs.lines] == ["a\ufffdb"]
    message = sent["finished"].finished.message
    assert "\x00" not in message and len(message) == daemon_module.MAX_TEXT
    assert set(daemon.unconfirmed) == {"r1"}
    await daemon.handle(scheduler_pb2.SchedulerMessage(refused=scheduler_pb2.Refused(run="r1", lease=2, reason="stale")))
    assert daemon.unconfirmed == {} and daemon.all_settled.is_set()
