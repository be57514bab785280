"""The worker's telemetry: a span per run, and a count of stream reconnects.

The run span continues the scheduler's dispatch span (`Dispatch.traceparent`) and is the
current span while the run executes, so the flow process is started with TRACEPARENT
naming it, and the worker's log lines about the run carry its ids.

Metric: `shiftboss.worker.reconnects` (counter; attributes `shiftboss.pool`,
`shiftboss.worker`): the stream to the scheduler dropped and the worker connected again.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from shiftboss.telemetry import Telemetry, context_from_traceparent
from shiftboss.v1 import scheduler_pb2

#: Outcomes that make the run's span an error.
FAILED = frozenset({"FAILED", "CRASHED"})


class WorkerTelemetry:
    def __init__(self, telemetry: Telemetry, pool: str, worker: str) -> None:
        self.tracer = telemetry.tracer("shiftboss.worker")
        self.attributes = {"shiftboss.pool": pool, "shiftboss.worker": worker}
        self.reconnects = telemetry.meter("shiftboss.worker").create_counter(
            "shiftboss.worker.reconnects", unit="{reconnect}",
            description="Times the stream to the scheduler dropped and the worker connected again",
        )

    def reconnected(self) -> None:
        self.reconnects.add(1, self.attributes)

    async def run(
        self,
        dispatch: scheduler_pb2.Dispatch,
        work: Coroutine[Any, Any, None],
        outcome: Callable[[], scheduler_pb2.Finished | None],
    ) -> None:
        """Run `work` (the daemon's execution of one dispatched run) inside the run's span;
        `outcome` tells how the run ended once `work` is done."""
        attributes = {
            **self.attributes,
            "shiftboss.run.id": dispatch.run,
            "shiftboss.run.name": dispatch.name,
            "shiftboss.deployment": dispatch.deployment,
            "shiftboss.queue": dispatch.queue,
            "shiftboss.lease": dispatch.lease,
        }
        with self.tracer.start_as_current_span(
            f"run {dispatch.deployment or dispatch.run}",
            context=context_from_traceparent(dispatch.traceparent),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,  # a cancelled run is an outcome, told below, not an error
            set_status_on_exception=False,
        ) as span:
            try:
                await work
            finally:
                self._ended(span, outcome())

    @staticmethod
    def _ended(span: Any, finished: scheduler_pb2.Finished | None) -> None:
        if finished is None:
            return
        state = scheduler_pb2.RunState.Name(finished.state)
        span.set_attribute("shiftboss.state", state)
        if finished.HasField("exit_code"):
            span.set_attribute("process.exit.code", finished.exit_code)
        if state in FAILED:
            span.set_status(Status(StatusCode.ERROR, finished.message or state))
