"""The scheduler's spans and metrics beyond the RPC interceptors.

A run is admitted and dispatched after CreateFlowRun has returned, so those steps cannot
sit under the request's server span by nesting: the request's trace context is stored
with the run (`FlowRunRow.traceparent`) and the admission and dispatch spans are started
with it as parent. A run made by a schedule has no caller; its admission span is a root.
The dispatch span's context travels to the worker in `Dispatch.traceparent`.

Only that context is needed while a run is sent. Its admission and dispatch spans and its
latencies are made when the admission pass that dispatched it ends (`dispatched`), with
those of every other run of the pass, before anything sent can be read: a pass sends tens
of runs in a burst, and the SDK's code for a span or a histogram costs much less run tens
of times in a row than once between other work. The spans are made through
shiftboss._spans, which skips the parts of the SDK's general path that decide nothing here.

Exists only when telemetry is on (`observe` returns None otherwise), so the dispatch path
checks one attribute and does nothing more.

Metrics (attributes `shiftboss.pool`, `shiftboss.queue`):
  shiftboss.runs.queued              gauge   runs waiting in a queue (SCHEDULED, in the core)
  shiftboss.pool.slots.occupied      gauge   runs holding a slot of the pool (PENDING, RUNNING, CANCELLING)
  shiftboss.pool.slots.limit         gauge   the pool's concurrency limit (pools that have one)
  shiftboss.queue.slots.occupied     gauge   the same per queue
  shiftboss.queue.slots.limit        gauge   the queue's concurrency limit (queues that have one)
  shiftboss.dispatch.since_created   histogram, s   created -> dispatched
  shiftboss.dispatch.since_due       histogram, s   scheduled start -> dispatched (0 when prefetched)
  shiftboss.runs.finished            counter  runs that reached a final state, by `shiftboss.state`

The counter is observable: a run that ends is one increment in a dict, which the metric
reader copies when it collects, rather than the SDK's work for an `add`.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from shiftboss._histograms import Histograms
from shiftboss._spans import Spans, read_traceparent, span_context
from shiftboss.telemetry import Telemetry, traceparent_of
from shiftboss.services.gauges import LoopReading
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states

if TYPE_CHECKING:
    from shiftboss.services.scheduler.service import SchedulerService
    from shiftboss.v1 import scheduler_pb2

log = logging.getLogger("shiftboss.scheduler")
POOL, QUEUE, STATE = "shiftboss.pool", "shiftboss.queue", "shiftboss.state"
RUN, WAITED, DUE = "shiftboss.run.id", "shiftboss.admission.waited_seconds", "shiftboss.admission.due_seconds"
WORKER, LEASE = "shiftboss.worker", "shiftboss.lease"
#: Seconds: from a millisecond push to a run that waited an hour for a slot.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

#: How many callers' contexts are kept for runs not yet dispatched (see caller_traceparent).
CALLERS = 10_000
#: How many attributes the admission and dispatch spans carry.
ADMISSION_ATTRIBUTES, DISPATCH_ATTRIBUTES = 5, 2

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


#: What the dispatch's telemetry reads of a run.
_FIELDS = ("pool", "queue", "id", "worker", "lease", "created", "scheduled_start", "traceparent")
_read_row, _read_object = operator.itemgetter(*_FIELDS), operator.attrgetter(*_FIELDS)


def _fields(run: Any) -> tuple[Any, ...]:
    """The run's `_FIELDS`. A leased run is a SQLAlchemy Row (runs.lease), whose mapping
    reads ten times faster than its attributes."""
    mapping = getattr(run, "_mapping", None)
    return _read_object(run) if mapping is None else _read_row(mapping)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def _latencies(admitted: datetime, created: datetime, due: datetime) -> tuple[float, float]:
    """Seconds from a run's creation, and from its scheduled start, to its admission."""
    if created.tzinfo is None:  # as SQLite hands them back: UTC
        admitted = admitted.replace(tzinfo=None)
    return (admitted - created).total_seconds(), (admitted - due).total_seconds()


def _admission(pool: str, queue: str, run_id: str, waited: float, early: float) -> dict[str, Any]:
    """The admission span's attributes."""
    return {POOL: pool, QUEUE: queue, RUN: run_id, WAITED: waited, DUE: early}


@dataclass(slots=True, frozen=True)
class Occupancy:
    """A copy of the cores' counts, taken on the event loop."""

    #: (pool, occupied, limit)
    pools: list[tuple[str, int, int | None]]
    #: (pool, queue, queued, occupied, limit)
    queues: list[tuple[str, str, int, int, int | None]]


class SchedulerTelemetry:
    def __init__(self, service: SchedulerService, telemetry: Telemetry) -> None:
        self.service = service
        self.tracer = telemetry.tracer("shiftboss.scheduler")
        self.spans = Spans(self.tracer)
        meter = telemetry.meter("shiftboss.scheduler")
        latency = functools.partial(meter.create_histogram, unit="s", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self.since_created = Histograms(
            latency("shiftboss.dispatch.since_created", description="Time from a run's creation to its dispatch to a worker")
        )
        self.since_due = Histograms(
            latency(
                "shiftboss.dispatch.since_due",
                description="Time from a run's scheduled start to its dispatch (0 for a run dispatched ahead, in a worker's prefetch)",
            )
        )
        #: Runs that reached each final state, by (pool, queue, state), for the counter below.
        self.finished: dict[tuple[str, str, str], int] = {}
        meter.create_observable_counter(
            "shiftboss.runs.finished", [self._finished], unit="{run}", description="Runs that reached a final state, by state"
        )
        #: The callers' contexts of runs created here and not yet dispatched, by their
        #: traceparent, oldest first (at most CALLERS).
        self._callers: dict[str, Any] = {}
        #: Metric attributes of each (pool, queue), made once.
        self._where: dict[tuple[str, str], dict[str, str]] = {}
        #: Runs dispatched in this admission pass so far: (pool, queue, run id, worker, lease,
        #: created, scheduled start, admitted, the admission span's parent, the admission and
        #: dispatch spans, leased, sent), the spans None where they are made already.
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

    def caller_traceparent(self, slot: str | None) -> str:
        """The context a new run keeps: its caller's; none for a run a schedule made.

        Kept here too, by its text, for the run's admission span: most runs are dispatched
        by this process soon after, and a context looked up costs a tenth of one read back
        from its text (which is what a run created before a restart, or long before,
        gets)."""
        if slot:
            return ""
        caller = trace.get_current_span().get_span_context()
        if not caller.is_valid:
            return ""
        text = traceparent_of(caller)
        callers = self._callers
        callers[text] = span_context(caller.trace_id, caller.span_id, True, caller.trace_flags)  # as read back
        if len(callers) > CALLERS:
            del callers[next(iter(callers))]  # the oldest
        return text

    def dispatching(self, run: Any, message: scheduler_pb2.Dispatch, admitted: datetime) -> None:
        """A leased run about to be pushed: the context of its dispatch span goes in the
        message for the worker now; its spans and latencies are made by `dispatched`, with
        those of the rest of the admission pass."""
        try:
            leased = time.time_ns()
            spans = self.spans
            pool, queue, run_id, worker, lease, created, due, traceparent = _fields(run)
            parent = self._callers.pop(traceparent, None) or (read_traceparent(traceparent) if traceparent else None)
            admission = spans.child(parent, ADMISSION_ATTRIBUTES)
            dispatch = None if admission is None else spans.child(admission, DISPATCH_ATTRIBUTES)
            if dispatch is None:  # the tracer makes these spans: now, and with no pause between
                waited, early = _latencies(admitted, created, due)
                attributes = _admission(pool, queue, run_id, waited, early)
                admission = spans.finished("admission", parent, attributes, _ns(admitted), leased)
                dispatch = spans.finished("dispatch", admission, {WORKER: worker, LEASE: lease}, leased, time.time_ns())
                self._pending.append((pool, queue, run_id, worker, lease, created, due, admitted, None, None, None, 0, 0))
            else:
                sent = time.time_ns()
                self._pending.append((pool, queue, run_id, worker, lease, created, due, admitted, parent, admission, dispatch, leased, sent))
            message.traceparent = traceparent_of(dispatch)
        except Exception:  # telemetry must never stop a run from going out
            log.exception("telemetry of the dispatch of flow run %s failed", run.id)

    def dispatched(self) -> None:
        """The spans and latencies of the runs `dispatching` was told of since last time, made
        together at the end of an admission pass: a pass sends tens of runs in a burst, and
        the SDK's code for a span or a histogram costs much less run many times in a row
        than once between other work."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            emit = self.spans.emit
            latencies = []
            last = started = None
            for pool, queue, run_id, worker, lease, created, due, admitted, parent, admission, dispatch, leased, sent in pending:
                if admitted is not last:  # one pass, one admission time
                    last, started = admitted, _ns(admitted)
                key = (pool, queue)
                where = self._where.get(key)
                if where is None:
                    where = self._where[key] = {POOL: pool, QUEUE: queue}
                waited, early = _latencies(admitted, created, due)
                latencies.append((key, where, waited, early))
                if dispatch is not None:  # made by `dispatching` otherwise
                    emit("admission", admission, parent, _admission(pool, queue, run_id, waited, early), started, leased)
                    emit("dispatch", dispatch, admission, {WORKER: worker, LEASE: lease}, leased, sent)
            self.since_created.record_many((key, where, max(0.0, waited)) for key, where, waited, _ in latencies)
            self.since_due.record_many((key, where, max(0.0, early)) for key, where, _, early in latencies)
        except Exception:  # nor from being recorded as sent
            log.exception("telemetry of the dispatch of %d flow runs failed", len(pending))

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


def observe(service: SchedulerService) -> SchedulerTelemetry | None:
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
