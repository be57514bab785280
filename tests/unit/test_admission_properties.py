"""Random operation sequences: the compiled core matches the reference step by step, and the
admission invariants hold (no limit exceeded, no run released twice, the waterfall kept)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shiftboss.core import UNCHANGED, ReferencePoolState, compiled_pool_state

CompiledPoolState = compiled_pool_state()
QUEUES = ["a", "b", "c", "d"]
limits = st.none() | st.integers(min_value=0, max_value=4)
times = st.integers(min_value=0, max_value=20).map(float)
keys = st.integers(min_value=0, max_value=30)


def outcome(call: Any) -> Any:
    """The result of a call, or the type of what it raised: both implementations must agree."""
    try:
        return ("ok", call())
    except (KeyError, ValueError) as exc:
        return ("raised", type(exc))


class SameBehaviour(RuleBasedStateMachine):
    @initialize(limit=limits, paused=st.booleans())
    def start(self, limit: int | None, paused: bool) -> None:
        self.pools = (ReferencePoolState(limit, paused), CompiledPoolState(limit, paused))

    def both(self, name: str, *args: Any, **kwargs: Any) -> Any:
        ref, comp = (outcome(lambda p=p: getattr(p, name)(*args, **kwargs)) for p in self.pools)
        assert ref == comp, f"{name}{args}{kwargs}: reference {ref} != compiled {comp}"
        return ref

    @rule(name=st.sampled_from(QUEUES), priority=st.integers(1, 5), limit=limits, paused=st.booleans())
    def add_queue(self, name: str, priority: int, limit: int | None, paused: bool) -> None:
        self.both("add_queue", name, priority, limit, paused)

    @rule(name=st.sampled_from(QUEUES), priority=st.none() | st.integers(1, 5), limit=st.just(UNCHANGED) | limits, paused=st.none() | st.booleans())
    def update_queue(self, name: str, priority: int | None, limit: Any, paused: bool | None) -> None:
        self.both("update_queue", name, priority=priority, limit=limit, paused=paused)

    @rule(name=st.sampled_from(QUEUES))
    def remove_queue(self, name: str) -> None:
        self.both("remove_queue", name)

    @rule(limit=limits)
    def set_limit(self, limit: int | None) -> None:
        self.both("set_limit", limit)

    @rule(paused=st.booleans())
    def set_paused(self, paused: bool) -> None:
        self.both("set_paused", paused)

    @rule(key=keys, queue=st.sampled_from(QUEUES), scheduled=times)
    def add_run(self, key: int, queue: str, scheduled: float) -> None:
        self.both("add_run", key, queue, scheduled)

    @rule(key=keys, queue=st.sampled_from(QUEUES))
    def occupy(self, key: int, queue: str) -> None:
        self.both("occupy", key, queue)

    @rule(key=keys)
    def remove_run(self, key: int) -> None:
        self.both("remove_run", key)

    @rule(key=keys, scheduled=times)
    def reschedule(self, key: int, scheduled: float) -> None:
        self.both("reschedule", key, scheduled)

    @rule(key=keys)
    def release(self, key: int) -> None:
        self.both("release", key)

    @rule(key=keys)
    def finish(self, key: int) -> None:
        self.both("finish", key)

    @rule(key=keys, scheduled=times)
    def requeue(self, key: int, scheduled: float) -> None:
        self.both("requeue", key, scheduled)

    @rule(now=times, prefetch=st.sampled_from([0.0, 5.0]), queues=st.none() | st.lists(st.sampled_from(QUEUES + ["x"]), max_size=3), limit=limits)
    def admit(self, now: float, prefetch: float, queues: list[str] | None, limit: int | None) -> None:
        self.both("admit", now, prefetch, queues, limit)

    @rule(now=times, queues=st.none() | st.lists(st.sampled_from(QUEUES), max_size=2))
    def next_due(self, now: float, queues: list[str] | None) -> None:
        self.both("next_due", queues)

    @rule(key=keys, now=times)
    def explain(self, key: int, now: float) -> None:
        self.both("explain", key, now, 2.0)

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "pools"):
            return
        ref, comp = self.pools
        assert ref.snapshot() == comp.snapshot()
        assert (len(ref), ref.occupied, ref.queues()) == (len(comp), comp.occupied, comp.queues())
        for name in ref.queues():
            assert ref.queue_occupied(name) == comp.queue_occupied(name)
            assert ref.queue_length(name) == comp.queue_length(name)
            assert ref.queue_limit(name) == comp.queue_limit(name)


SameBehaviour.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSameBehaviour = SameBehaviour.TestCase


class Invariants(RuleBasedStateMachine):
    """On the compiled core alone: what admission promises, checked after every admit."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = CompiledPoolState(None, False)
        self.released: set[int] = set()
        self.next_key = 0
        self.queue_of: dict[int, str] = {}
        for priority, name in enumerate(QUEUES, start=1):
            self.pool.add_queue(name, priority)

    @rule(queue=st.sampled_from(QUEUES), scheduled=times)
    def add_run(self, queue: str, scheduled: float) -> None:
        self.pool.add_run(self.next_key, queue, scheduled)
        self.queue_of[self.next_key] = queue
        self.next_key += 1

    @rule(name=st.sampled_from(QUEUES), limit=limits, paused=st.booleans())
    def update_queue(self, name: str, limit: int | None, paused: bool) -> None:
        self.pool.update_queue(name, limit=limit, paused=paused)

    @rule(limit=limits)
    def set_limit(self, limit: int | None) -> None:
        self.pool.set_limit(limit)

    @precondition(lambda self: bool(self.released))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.released)))
        self.pool.finish(key)
        self.released.discard(key)

    @rule(now=times, queues=st.none() | st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True), limit=limits)
    def admit(self, now: float, queues: list[str] | None, limit: int | None) -> None:
        before = self.pool.snapshot()
        got = self.pool.admit(now, 0.0, queues, limit)
        assert not (set(got) & self.released), "a run was released twice"
        assert len(got) == len(set(got))
        if limit is not None:
            assert len(got) <= limit
        self.released.update(got)
        # The waterfall: replay the admission on the snapshot and check that no run of a
        # lower queue went out while a higher served queue had a due run and a free slot.
        limits_of = {name: qlimit for name, _, qlimit, _ in before.queues}
        paused_of = {name: qpaused for name, _, _, qpaused in before.queues}
        occupied = {name: 0 for name in QUEUES}
        for _, queue, _, occupying in before.runs:
            if occupying:
                occupied[queue] += 1
        due = {name: sorted((s, k) for k, q, s, o in before.runs if q == name and not o and s <= now) for name in QUEUES}
        pool_used = sum(occupied.values())
        served = [q for q in self.pool.queues() if queues is None or q in queues]
        for key in got:
            queue = self.queue_of[key]
            for higher in served[: served.index(queue)]:
                has_slot = limits_of[higher] is None or occupied[higher] < limits_of[higher]
                pool_free = before.limit is None or pool_used < before.limit
                assert not (due[higher] and has_slot and pool_free and not paused_of[higher]), (
                    f"run {key} of {queue} went out while {higher} had a due run and a free slot"
                )
            occupied[queue] += 1
            pool_used += 1
            due[queue] = [entry for entry in due[queue] if entry[1] != key]
        # No limit is pushed past by admission (a limit lowered below what is occupied stays so).
        before_occupied = {name: sum(1 for _, q, _, o in before.runs if o and q == name) for name in QUEUES}
        for name in QUEUES:
            if limits_of[name] is not None:
                assert self.pool.queue_occupied(name) <= max(limits_of[name], before_occupied[name])
        if before.limit is not None:
            assert self.pool.occupied <= max(before.limit, sum(before_occupied.values()))

    @invariant()
    def limits_hold(self) -> None:
        snap = self.pool.snapshot()
        if snap.limit is not None and self.pool.occupied > snap.limit:
            # Lowering a limit below what is occupied is allowed; admission must then add nothing.
            assert self.pool.admit(1e9, 0.0, None, None) == []
        counts = {name: 0 for name in QUEUES}
        for _, queue, _, occupying in snap.runs:
            counts[queue] += occupying
        assert sum(counts.values()) == self.pool.occupied == len(self.released)


Invariants.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestInvariants = Invariants.TestCase


def test_long_queues_match_the_reference() -> None:
    """Queues of thousands of runs, beyond the sizes the state machines reach: every call of a
    long random sequence gives the same result in both cores, and so does the state."""
    import random

    rng = random.Random(5)
    ref, comp = ReferencePoolState(), CompiledPoolState()
    for pool in (ref, comp):
        pool.add_queue("a", 1)
        pool.add_queue("b", 2, limit=3000)
        pool.add_queue("c", 3)

    def both(name: str, *args: Any) -> Any:
        got = [outcome(lambda p=p: getattr(p, name)(*args)) for p in (ref, comp)]
        assert got[0] == got[1], f"{name}{args}: reference {got[0]} != compiled {got[1]}"
        return got[0]

    keys = range(40_000)
    longest = 0
    for step in range(30_000):
        roll = rng.random()
        key = rng.choice(keys)
        when = float(rng.randrange(200))
        if roll < 0.55:
            # mostly in order of creation, as the scheduler adds them; sometimes not
            both("add_run", step if rng.random() < 0.7 else key, rng.choice("aabc"), when)
        elif roll < 0.65:
            both("reschedule", step - rng.randrange(1, 3000), when)
        elif roll < 0.70:
            both("remove_run", step - rng.randrange(1, 3000))
        elif roll < 0.72:
            both("release", step - rng.randrange(1, 3000))
        elif roll < 0.82:
            both("finish", rng.choice(keys) if rng.random() < 0.2 else step - rng.randrange(1, 3000))
        elif roll < 0.85:
            both("requeue", step - rng.randrange(1, 3000), when)
        elif roll < 0.87:
            both("occupy", key, rng.choice("abc"))
        else:
            queues = rng.choice([None, None, ["a"], ["b", "c"]])
            both("admit", float(rng.randrange(250)), rng.choice([0.0, 5.0]), queues, rng.choice([1, 1, 2, 3]))
        if step % 2000 == 0:
            longest = max(longest, *(ref.queue_length(q) for q in "abc"))
            assert ref.snapshot() == comp.snapshot()
            both("explain", key, 100.0, 2.0)
            both("next_due", None)
    assert longest > 1000  # many blocks of entries per queue, not one
    # Reschedules back and forth among a few times: stale entries, and entries that come
    # back to life, pile up until a queue's entries are compacted.
    waiting = [k for k, q, _, occupying in ref.snapshot().runs if q == "c" and not occupying]
    for step in range(20_000):
        if step % 50 == 49:
            both("admit", 3.0, 0.0, ["c"], 2)
        else:
            both("reschedule", rng.choice(waiting), float(rng.randrange(6)))
        if step % 2000 == 0:
            assert ref.snapshot() == comp.snapshot()
    assert ref.snapshot() == comp.snapshot()
    assert [ref.queue_length(q) for q in "abc"] == [comp.queue_length(q) for q in "abc"]
