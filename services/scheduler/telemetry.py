"""The scheduler's spans and metrics beyond the RPC interceptors.

A run is admitted and dispatched after CreateFlowRun has returned, so those steps cannot
sit under the request's server span by nesting. The request's trace context is stored
with the run (`FlowRunRow.traceparent`) and sent to the worker in `Dispatch.traceparent`,
so the worker's span of the run, and the flow's own spans, continue the caller's trace:
one trace from the call that made the run to the flow that ran it, across restarts too.

An admission pass is one span, `admission`, with a link to each run it dispatched (to the
run's stored context: the span of the call that made it, which names the run): a span per
pass, not per run, since a pass sends tens of runs in a burst.
The pass has no caller, so its span is a root, sampled as the tracer's sampler says
(OTEL_TRACES_SAMPLER, or `SHIFTBOSS_TELEMETRY_SAMPLE_RATIO`); its links and attributes are
made only when it is recording. A run a schedule made has no caller either: its
`Dispatch.traceparent` is the pass's span.

Everything goes through OpenTelemetry's public API. Exists only when telemetry is on
(`observe` returns None otherwise), so the dispatch path checks one attribute and does
nothing more.

Metrics (attributes `shiftboss.pool`, `shiftboss.queue`):
  shiftboss.runs.queued              gauge   runs waiting in a queue (SCHEDULED, in the core)
  shiftboss.pool.slots.occupied      gauge   runs holding a slot of the pool (PENDING, RUNNING)
  shiftboss.pool.slots.limit         gauge   the pool's concurrency limit (pools that have one)
  shiftboss.queue.slots.occupied     gauge   the same per queue
  shiftboss.queue.slots.limit        gauge   the queue's concurrency limit (queues that have one)
  shiftboss.dispatch.delay           histogram, s   due (scheduled start, or creation if later) -> dispatched
  shiftboss.runs.finished            counter  runs that reached a final state, by `shiftboss.state`

The counter is observable: a run that ends is one increment in a dict, which the metric
reader copies when it collects, rather than the SDK's work for an `add`.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from shiftboss._traceparent import read_traceparent, traceparent
from shiftboss.services.gauges import LoopReading
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.telemetry import Telemetry

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler
    from shiftboss.v1 import scheduler_pb2

log = logging.getLogger("shiftboss.scheduler")
POOL, QUEUE, STATE = "shiftboss.pool", "shiftboss.queue", "shiftboss.state"
RUN, RUNS = "shiftboss.run.id", "shiftboss.admission.runs"
#: Seconds: from a millisecond push to a run that waited an hour for a slot.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def _delay(admitted: datetime, created: datetime, due: datetime) -> float:
    """Seconds from when a run could first go out (its scheduled start, or its creation if
    that is later) to its admission; 0 for a run sent ahead, in a worker's prefetch."""
    if created.tzinfo is None:  # as SQLite hands them back: UTC
        admitted = admitted.replace(tzinfo=None)
    return max(0.0, (admitted - max(created, due)).total_seconds())


#: What the dispatch's telemetry reads of a leased run (hot.Leased).
_FIELDS = operator.attrgetter("pool", "queue", "created", "scheduled_start", "traceparent")


@dataclass(slots=True, frozen=True)
class Occupancy:
    """A copy of the cores' counts, taken on the event loop."""

    #: (pool, occupied, limit)
    pools: list[tuple[str, int, int | None]]
    #: (pool, queue, queued, occupied, limit)
    queues: list[tuple[str, str, int, int, int | None]]


class SchedulerTelemetry:
    def __init__(self, service: Scheduler, telemetry: Telemetry) -> None:
        self.service = service
        self.tracer = telemetry.tracer("shiftboss.scheduler")
        meter = telemetry.meter("shiftboss.scheduler")
        self.delay = meter.create_histogram(
            "shiftboss.dispatch.delay",
            unit="s",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
            description="Time from when a run could first go out (its scheduled start, or its creation if later) to its "
            "dispatch to a worker; 0 for a run sent ahead, in a worker's prefetch",
        )
        #: Runs that reached each final state, by (pool, queue, state), for the counter below.
        self.finished: dict[tuple[str, str, str], int] = {}
        meter.create_observable_counter(
            "shiftboss.runs.finished", [self._finished], unit="{run}", description="Runs that reached a final state, by state"
        )
        #: Metric attributes of each (pool, queue), made once.
        self._where: dict[tuple[str, str], dict[str, str]] = {}
        #: The span of the admission pass under way, made at its first dispatch, and when
        #: the pass admitted its runs.
        self._pass: Any = None
        self._admitted: datetime | None = None
        #: Runs dispatched in this admission pass so far: (pool, queue, created, scheduled
        #: start, the run's stored context).
        self._pending: list[tuple[Any, ...]] = []
        self.occupancy: LoopReading[Occupancy] = LoopReading(read=self._occupancy, readers=5)  # the five gauges below
        meter.create_observable_gauge(
            "shiftboss.runs.queued", [self._queued], unit="{run}", description="Runs waiting in a work queue"
        )
        meter.create_observable_gauge(
            "shiftboss.pool.slots.occupied", [self._pool_occupied], unit="{run}", description="Runs holding a slot of the work pool"
        )
        meter.create_observable_gauge(
            "shiftboss.pool.slots.limit", [self._pool_limit], unit="{run}", description="Concurrency limit of the work pool"
        )
        meter.create_observable_gauge(
            "shiftboss.queue.slots.occupied", [self._queue_occupied], unit="{run}", description="Runs holding a slot of the work queue"
        )
        meter.create_observable_gauge(
            "shiftboss.queue.slots.limit", [self._queue_limit], unit="{run}", description="Concurrency limit of the work queue"
        )

    def close(self) -> None:
        self.dispatched()  # what a pass that failed half-way left
        self.occupancy.close()

    # ---------------------------------------------------------------- runs

    @staticmethod
    def caller_traceparent(slot: str | None, run_id: str) -> str:
        """The context a new run keeps: its caller's; none for a run a schedule made. The
        caller's span, when recorded, names the run it made: the admission span's link to
        the run leads there."""
        if slot:
            return ""
        caller = trace.get_current_span()
        context = caller.get_span_context()
        if not context.is_valid:
            return ""
        if caller.is_recording():
            caller.set_attribute(RUN, run_id)
        return traceparent(context)

    def dispatching(self, run: Any, message: scheduler_pb2.Dispatch, admitted: datetime) -> None:
        """A leased run about to be pushed. Its message keeps its caller's context; a run
        with none (a schedule made it) is sent as part of the pass's span. The pass's span
        and the run's latencies are made by `dispatched`, at the end of the pass."""
        try:
            if self._pass is None:
                self._pass = self.tracer.start_span("admission", start_time=_ns(admitted))
                self._admitted = admitted
            fields = _FIELDS(run)
            if not fields[4]:
                context = self._pass.get_span_context()
                if context.is_valid:
                    message.traceparent = traceparent(context)
            self._pending.append(fields)
        except Exception:  # telemetry must never stop a run from going out
            log.exception("telemetry of the dispatch of flow run %s failed", run.id)

    def dispatched(self) -> None:
        """End the pass's span, with a link to each run it sent, and record the runs'
        latencies."""
        pending, self._pending = self._pending, []
        span, self._pass = self._pass, None
        if not pending:
            return
        try:
            recording = span is not None and span.is_recording()
            admitted, record = self._admitted, self.delay.record
            for pool, queue, created, due, stored in pending:
                key = (pool, queue)
                where = self._where.get(key)
                if where is None:
                    where = self._where[key] = {POOL: pool, QUEUE: queue}
                record(_delay(admitted, created, due), where)
                if recording:
                    caller = read_traceparent(stored) if stored else None
                    if caller is not None:
                        span.add_link(caller)
            if recording:
                span.set_attributes({POOL: pending[0][0], RUNS: len(pending)})
        except Exception:  # nor from being recorded as sent
            log.exception("telemetry of the dispatch of %d flow runs failed", len(pending))
        finally:
            if span is not None:
                span.end()

    def span(self, name: str) -> tuple[Any, object]:
        """A span of the scheduler's own, made current: (span, token to detach)."""
        span = self.tracer.start_span(name)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def changed(self, change: run_store.Transition) -> None:
        if change.after in states.TERMINAL and change.before not in states.TERMINAL:
            key = (change.run.pool, change.run.queue, change.after)
            self.finished[key] = self.finished.get(key, 0) + 1

    # ---------------------------------------------------------------- metric callbacks

    def _finished(self, options: CallbackOptions) -> Iterable[Observation]:
        # A copy taken in one step: the loop adds keys, but a dict is copied under the GIL
        # without running Python code, so never half-way through a change.
        counts = self.finished.copy()
        return [Observation(n, {POOL: pool, QUEUE: queue, STATE: state}) for (pool, queue, state), n in counts.items()]

    def _occupancy(self) -> Occupancy:
        pools, queues = [], []
        for name, runtime in list(self.service.dispatcher.pools.items()):
            core = runtime.state
            pools.append((name, core.occupied, core.limit))
            for queue in core.queues():
                queues.append((name, queue, core.queue_length(queue), core.queue_occupied(queue), core.queue_limit(queue)))
        return Occupancy(pools, queues)

    def _queued(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self.occupancy.get()
        return [Observation(n, {POOL: p, QUEUE: q}) for p, q, n, _, _ in reading.queues] if reading else []

    def _queue_occupied(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self.occupancy.get()
        return [Observation(n, {POOL: p, QUEUE: q}) for p, q, _, n, _ in reading.queues] if reading else []

    def _queue_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self.occupancy.get()
        return [Observation(n, {POOL: p, QUEUE: q}) for p, q, _, _, n in reading.queues if n is not None] if reading else []

    def _pool_occupied(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self.occupancy.get()
        return [Observation(n, {POOL: p}) for p, n, _ in reading.pools] if reading else []

    def _pool_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self.occupancy.get()
        return [Observation(n, {POOL: p}) for p, _, n in reading.pools if n is not None] if reading else []


def observe(service: Scheduler) -> SchedulerTelemetry | None:
    """The scheduler's telemetry, hooked into its dispatcher; None when telemetry is off."""
    telemetry = service.mesh.telemetry
    if telemetry is None:
        return None
    observer = SchedulerTelemetry(service, telemetry)
    service.dispatcher.observer = observer
    return observer


def traced(name: str) -> Callable[[F], F]:
    """Run a scheduler method in a span of its own when telemetry is on."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.observer is None:
                return await method(self, *args, **kwargs)
            span, token = self.observer.span(name)
            try:
                return await method(self, *args, **kwargs)
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return run  # type: ignore[return-value]

    return decorate
