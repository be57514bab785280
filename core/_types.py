"""Values the scheduling core hands out, and the bounds of what it takes in; shared by the
reference and the compiled core, so both refuse the same values with the same message."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The largest limit (pool, queue or worker) and priority the core holds: a C int64. Both
#: cores refuse larger ones with ValueError naming this bound.
MAX_LIMIT = 2**63 - 1
MAX_PRIORITY = 2**63 - 1

#: What holds a run back, in the order explain() checks them.
BLOCKERS = ("released", "pool_paused", "queue_paused", "not_due", "queue_limit", "pool_limit", "runs_ahead", "none")


@dataclass(slots=True, frozen=True)
class Explanation:
    key: int
    queue: str
    state: str  # "candidate" or "occupying"
    queue_position: int  # candidates ahead of it in its queue
    pool_position: int  # due candidates ahead of it in the pool's waterfall
    blocker: str  # one of BLOCKERS
    message: str


@dataclass(slots=True)
class Snapshot:
    limit: int | None
    paused: bool
    #: (name, priority, limit, paused)
    queues: list[tuple[str, int, int | None, bool]] = field(default_factory=list)
    #: (key, queue, scheduled, occupying)
    runs: list[tuple[int, str, float, bool]] = field(default_factory=list)


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: update_queue(limit=UNCHANGED) leaves the limit as it is; None removes it.
UNCHANGED: object = _Unchanged()


def check_limit(field: str, limit: int | None) -> int | None:
    """A pool, queue or worker limit: None (no limit), or 0 to MAX_LIMIT."""
    if limit is None:
        return None
    if limit < 0:
        raise ValueError(f"{field} must not be negative, got {limit}")
    if limit > MAX_LIMIT:
        raise ValueError(f"{field} must be at most {MAX_LIMIT} (2**63 - 1), got {limit}")
    return limit


def check_priority(priority: int) -> int:
    if priority < 1:
        raise ValueError(f"priority must be at least 1, got {priority}")
    if priority > MAX_PRIORITY:
        raise ValueError(f"priority must be at most {MAX_PRIORITY} (2**63 - 1), got {priority}")
    return priority


def time_refused(field: str, value: object) -> ValueError:
    """NaN is no time: it is neither before nor after any other, so no order could hold it."""
    return ValueError(f"{field} must be a number, got {value}")
