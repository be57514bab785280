"""The pure-Python scheduling core: the readable specification of admission.

One PoolState models one work pool: its limit and pause, its queues (priority, limit,
pause, occupied slots) and the candidate runs of each queue ordered by scheduled start,
then key (the run's creation sequence). The compiled core must behave exactly like this.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from shiftboss.core._types import MAX_LIMIT, UNCHANGED, Explanation, Snapshot, check_limit, check_priority, time_refused


@dataclass(slots=True)
class _Queue:
    name: str
    priority: int
    limit: int | None
    paused: bool
    occupied: int = 0
    #: (scheduled, key); an entry is live while _candidates[key] == (name, scheduled).
    heap: list[tuple[float, int]] = field(default_factory=list)
    length: int = 0

    def full(self) -> bool:
        return self.limit is not None and self.occupied >= self.limit


def _time(field_name: str, value: float) -> float:
    value = float(value)
    if value != value:
        raise time_refused(field_name, value)
    return value


def _horizon(now: float, prefetch_seconds: float) -> float:
    """The latest scheduled start released now; refused when it is no number (inf - inf)."""
    now, prefetch_seconds = float(now), float(prefetch_seconds)
    horizon = now + prefetch_seconds
    if horizon != horizon:
        raise time_refused("now + prefetch_seconds", f"{now} + {prefetch_seconds}")
    return horizon


class PoolState:
    def __init__(self, limit: int | None = None, paused: bool = False) -> None:
        self._limit = check_limit("limit", limit)
        self._paused = bool(paused)
        self._occupied = 0
        self._queues: dict[str, _Queue] = {}
        self._order: list[_Queue] = []  # by (priority, name)
        self._candidates: dict[int, tuple[str, float]] = {}
        self._occupying: dict[int, str] = {}

    # ------------------------------------------------------------ pool

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def occupied(self) -> int:
        return self._occupied

    def set_limit(self, limit: int | None) -> None:
        self._limit = check_limit("limit", limit)

    def set_paused(self, paused: bool) -> None:
        self._paused = bool(paused)

    def _pool_full(self) -> bool:
        return self._limit is not None and self._occupied >= self._limit

    # ------------------------------------------------------------ queues

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise KeyError(f"unknown queue {name!r}") from None

    def _reorder(self) -> None:
        self._order = sorted(self._queues.values(), key=lambda q: (q.priority, q.name))

    def add_queue(self, name: str, priority: int, limit: int | None = None, paused: bool = False) -> None:
        if name in self._queues:
            raise ValueError(f"queue {name!r} already exists")
        check_priority(priority)
        self._queues[name] = _Queue(name, priority, check_limit("limit", limit), bool(paused))
        self._reorder()

    def update_queue(
        self, name: str, *, priority: int | None = None, limit: int | None | object = UNCHANGED, paused: bool | None = None
    ) -> None:
        queue = self._queue(name)
        # Every value is checked before any is applied: a refused update changes nothing.
        if priority is not None:
            check_priority(priority)
        if limit is not UNCHANGED:
            check_limit("limit", limit)  # type: ignore[arg-type]
        if priority is not None:
            queue.priority = priority
        if limit is not UNCHANGED:
            queue.limit = limit  # type: ignore[assignment]
        if paused is not None:
            queue.paused = bool(paused)
        self._reorder()

    def rename_queue(self, name: str, new_name: str) -> None:
        """The queue is known as `new_name` from now on: its runs, slots, priority, limit and
        pause stay as they are."""
        queue = self._queue(name)
        if new_name in self._queues:
            raise ValueError(f"queue {new_name!r} already exists")
        for key, (owner, scheduled) in list(self._candidates.items()):
            if owner == name:
                self._candidates[key] = (new_name, scheduled)
        for key, owner in list(self._occupying.items()):
            if owner == name:
                self._occupying[key] = new_name
        del self._queues[name]
        queue.name = new_name
        self._queues[new_name] = queue
        self._reorder()

    def remove_queue(self, name: str) -> None:
        queue = self._queue(name)
        for key, (owner, _) in list(self._candidates.items()):
            if owner == name:
                del self._candidates[key]
        for key, owner in list(self._occupying.items()):
            if owner == name:
                del self._occupying[key]
                self._occupied -= 1
        del self._queues[name]
        self._reorder()
        del queue

    def queues(self) -> list[str]:
        return [q.name for q in self._order]

    def queue_occupied(self, name: str) -> int:
        return self._queue(name).occupied

    def queue_length(self, name: str) -> int:
        return self._queue(name).length

    def queue_limit(self, name: str) -> int | None:
        return self._queue(name).limit

    # ------------------------------------------------------------ runs

    def __len__(self) -> int:
        return len(self._candidates)

    def __contains__(self, key: object) -> bool:
        return key in self._candidates or key in self._occupying

    def is_occupying(self, key: int) -> bool:
        if key in self._occupying:
            return True
        if key in self._candidates:
            return False
        raise KeyError(f"unknown run {key}")

    def add_run(self, key: int, queue: str, scheduled: float) -> None:
        if key in self:
            raise ValueError(f"run {key} already exists")
        q = self._queue(queue)
        scheduled = _time("scheduled", scheduled)
        self._candidates[key] = (queue, scheduled)
        heapq.heappush(q.heap, (scheduled, key))
        q.length += 1

    def _take_candidate(self, key: int) -> _Queue:
        try:
            name, _ = self._candidates.pop(key)
        except KeyError:
            raise KeyError(f"run {key} is not a candidate") from None
        q = self._queues[name]
        q.length -= 1
        return q

    def remove_run(self, key: int) -> None:
        if key in self._occupying:
            self.finish(key)
            return
        if key not in self._candidates:
            raise KeyError(f"unknown run {key}")
        self._take_candidate(key)

    def reschedule(self, key: int, scheduled: float) -> None:
        if key not in self._candidates:
            raise KeyError(f"run {key} is not a candidate")
        name, _ = self._candidates[key]
        scheduled = _time("scheduled", scheduled)
        self._candidates[key] = (name, scheduled)
        heapq.heappush(self._queues[name].heap, (scheduled, key))

    def _occupy(self, key: int, q: _Queue) -> None:
        self._occupying[key] = q.name
        q.occupied += 1
        self._occupied += 1

    def release(self, key: int) -> None:
        self._occupy(key, self._take_candidate(key))

    def occupy(self, key: int, queue: str) -> None:
        if key in self:
            raise ValueError(f"run {key} already exists")
        self._occupy(key, self._queue(queue))

    def finish(self, key: int) -> None:
        try:
            name = self._occupying.pop(key)
        except KeyError:
            raise KeyError(f"run {key} does not occupy a slot") from None
        self._queues[name].occupied -= 1
        self._occupied -= 1

    def requeue(self, key: int, scheduled: float) -> None:
        if key not in self._occupying:
            raise KeyError(f"run {key} does not occupy a slot")
        _time("scheduled", scheduled)
        name = self._occupying[key]
        self.finish(key)
        self.add_run(key, name, scheduled)

    # ------------------------------------------------------------ admission

    def _head(self, q: _Queue) -> tuple[float, int] | None:
        """The queue's earliest live candidate, dropping stale heap entries."""
        heap = q.heap
        while heap:
            scheduled, key = heap[0]
            if self._candidates.get(key) == (q.name, scheduled):
                return scheduled, key
            heapq.heappop(heap)
        return None

    def _serving(self, queues: Sequence[str] | None) -> list[_Queue]:
        if queues is None:
            return self._order
        wanted = set(queues)
        return [q for q in self._order if q.name in wanted]

    def admit(self, now: float, prefetch_seconds: float, queues: Sequence[str] | None = None, limit: int | None = None) -> list[int]:
        """The runs to release now to one worker, in waterfall order; they occupy at once."""
        taken: list[int] = []
        if limit is not None and limit > MAX_LIMIT:
            check_limit("limit", limit)
        horizon = _horizon(now, prefetch_seconds)
        if self._paused or (limit is not None and limit <= 0):
            return taken
        for q in self._serving(queues):
            if q.paused:
                continue
            while True:
                if self._pool_full() or (limit is not None and len(taken) >= limit):
                    return taken
                if q.full():
                    break
                head = self._head(q)
                if head is None or head[0] > horizon:
                    break
                heapq.heappop(q.heap)
                self.release(head[1])
                taken.append(head[1])
        return taken

    def peek(self, now: float, prefetch_seconds: float, queues: Sequence[str] | None = None, limit: int | None = None) -> list[int]:
        """What `admit` would release now, changing nothing: by definition, admit on a copy."""
        return PoolState.from_snapshot(self.snapshot()).admit(now, prefetch_seconds, queues, limit)

    def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        if self._paused:
            return None
        due = [head[0] for q in self._serving(queues) if not q.paused and (head := self._head(q)) is not None]
        return min(due) if due else None

    def explain(self, key: int, now: float, prefetch_seconds: float) -> Explanation:
        """Why a run is not released, checking: released, pool paused, queue paused, not due,
        queue limit, pool limit, runs ahead (due runs that would take the free slots first)."""
        if key in self._occupying:
            name = self._occupying[key]
            return Explanation(key, name, "occupying", 0, 0, "released", "the run was released and holds a slot")
        if key not in self._candidates:
            raise KeyError(f"unknown run {key}")
        name, scheduled = self._candidates[key]
        q = self._queues[name]
        mine = (scheduled, key)
        horizon = _horizon(now, prefetch_seconds)
        in_queue = sorted((s, k) for k, (n, s) in self._candidates.items() if n == name)
        queue_position = in_queue.index(mine)
        # Due candidates ahead in the waterfall: higher queues' due runs, then this queue's ahead of it.
        pool_position = 0
        for other in self._order:
            if other.paused:
                continue
            if other is q:
                pool_position += sum(1 for entry in in_queue[:queue_position] if entry[0] <= horizon)
                break
            pool_position += sum(1 for n, s in self._candidates.values() if n == other.name and s <= horizon)
        def explained(blocker: str, message: str) -> Explanation:
            return Explanation(key, name, "candidate", queue_position, pool_position, blocker, message)

        if self._paused:
            return explained("pool_paused", "the work pool is paused")
        if q.paused:
            return explained("queue_paused", f"queue {name!r} is paused")
        if scheduled > horizon:
            return explained("not_due", f"scheduled {scheduled - now:.0f}s from now, beyond the {prefetch_seconds:g}s prefetch")
        if q.full():
            return explained("queue_limit", f"waiting for queue {name!r} limit ({q.occupied}/{q.limit} occupied)")
        if self._pool_full():
            return explained("pool_limit", f"waiting for the work pool limit ({self._occupied}/{self._limit} occupied)")
        free = None
        if self._limit is not None:
            free = self._limit - self._occupied
        if q.limit is not None:
            ahead_in_queue = sum(1 for entry in in_queue[:queue_position] if entry[0] <= horizon)
            queue_free = q.limit - q.occupied
            if ahead_in_queue >= queue_free:
                return explained("runs_ahead", f"{ahead_in_queue} due runs ahead of it in queue {name!r} take its {queue_free} free slots")
        if free is not None and pool_position >= free:
            return explained("runs_ahead", f"{pool_position} due runs ahead of it in the waterfall take the pool's {free} free slots")
        return explained("none", "the next admission releases it")

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> Snapshot:
        return Snapshot(
            limit=self._limit,
            paused=self._paused,
            queues=[(q.name, q.priority, q.limit, q.paused) for q in self._order],
            runs=[(k, n, s, False) for k, (n, s) in sorted(self._candidates.items())]
            + [(k, n, 0.0, True) for k, n in sorted(self._occupying.items())],
        )

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> PoolState:
        state = cls(snap.limit, snap.paused)
        for name, priority, limit, paused in snap.queues:
            state.add_queue(name, priority, limit, paused)
        for key, queue, scheduled, occupying in snap.runs:
            if occupying:
                state.occupy(key, queue)
            else:
                state.add_run(key, queue, scheduled)
        return state
