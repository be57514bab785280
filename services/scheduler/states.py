"""Flow run states: which transitions are legal, and what each does to a slot.

`check` is the rule every change obeys. A run changes state in one place,
`Scheduler.transition` (engine.py), which checks it here and records it (runs.record),
whether the change is written by the ORM (`change_state`) or by the fast path's batches
(outcomes.py through hot.py). Three writes stand outside it, each one already a checked
transition or none at all:

- the lease (`LEASED`, hot.py): SCHEDULED -> PENDING for a whole batch in one UPDATE
  whose WHERE clause is the check (`state = SCHEDULED`); a run that left SCHEDULED
  meanwhile is not released;
- a new run is inserted SCHEDULED: its first state, not a change;
- the waiting runs a deployment change removes are deleted, not changed; the core sees
  them as SCHEDULED -> CANCELLED (`Scheduler.forget_runs`).

A failure with retries left is checked as the failure, then recorded as SCHEDULED
(AwaitingRetry, retries.py)."""

from __future__ import annotations

from shiftboss.errors import FailedPrecondition, InvalidArgument

SCHEDULED, LATE, PENDING, RUNNING = "SCHEDULED", "LATE", "PENDING", "RUNNING"
COMPLETED, FAILED, CRASHED, CANCELLING, CANCELLED = "COMPLETED", "FAILED", "CRASHED", "CANCELLING", "CANCELLED"

STORED = (SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CRASHED, CANCELLING, CANCELLED)
#: States that hold a slot of the queue and the pool (Prefect's work-pool rule: a run being
#: cancelled has given its slot back, so the next run may start while it stops).
OCCUPYING = frozenset({PENDING, RUNNING})
#: States of a run on a worker: they count against the worker's own limit, and a worker
#: that is lost or reconnects settles them.
ON_WORKER = frozenset({PENDING, RUNNING, CANCELLING})
#: States that wait in the core's waterfall.
CANDIDATE = frozenset({SCHEDULED})
TERMINAL = frozenset({COMPLETED, FAILED, CRASHED, CANCELLED})
#: The one change written by a guarded UPDATE rather than by `transition`: a release to a worker.
LEASED = (SCHEDULED, PENDING)

ALLOWED: dict[str, frozenset[str]] = {
    SCHEDULED: frozenset({PENDING, CANCELLED}),
    # A lease that expires, or a worker lost before it started the run, sends it back.
    PENDING: frozenset({SCHEDULED, RUNNING, COMPLETED, FAILED, CRASHED, CANCELLING, CANCELLED}),
    # A worker that shuts down cancels what it still runs.
    RUNNING: frozenset({COMPLETED, FAILED, CRASHED, CANCELLING, CANCELLED}),
    # A run being cancelled may still end by itself first.
    CANCELLING: frozenset({CANCELLED, COMPLETED, FAILED, CRASHED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CRASHED: frozenset(),
    CANCELLED: frozenset(),
}


def parse_state(value: str, field: str = "state") -> str:
    if value == LATE:
        raise InvalidArgument(f"{field}: LATE is shown, not set; set SCHEDULED", field=field)
    if value not in STORED:
        raise InvalidArgument(f"{field}: unknown state {value!r}; one of {', '.join(STORED)}", field=field)
    return value


def check(current: str, new: str, *, force: bool = False) -> None:
    """Raise FAILED_PRECONDITION naming both states for an illegal transition."""
    if force or new in ALLOWED[current]:
        return
    raise FailedPrecondition(f"state: cannot go from {current} to {new}", field="state")
