"""Values the scheduling core hands out; shared by the reference and the compiled core."""

from __future__ import annotations

from dataclasses import dataclass, field

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
