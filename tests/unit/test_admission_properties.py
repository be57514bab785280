"""What admission promises, on the compiled core alone (no limit exceeded, no run released
twice, the waterfall kept), and long seeded sequences on queues of thousands of runs that
the compiled core runs exactly as the reference does. The step-by-step differential test
is tests/unit/test_admission_twin.py."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shiftboss.core import ReferencePoolState, compiled_pool_state

CompiledPoolState = compiled_pool_state()
QUEUES = ["a", "b", "c", "d"]
limits = st.none() | st.integers(min_value=0, max_value=4)
times = st.integers(min_value=0, max_value=20).map(float)
keys = st.integers(min_value=0, max_value=30)


def outcome(call: Any) -> Any:
    """The result of a call, or the type and message of what it raised: both must agree."""
    try:
        return ("ok", call())
    except (KeyError, ValueError) as exc:
        return ("raised", type(exc), str(exc))


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
    long random sequence gives the same result in both cores, and so does the state. The pool
    and two of its queues have limits that fill up, the limits change, and the pool and the
    queues are paused and resumed, so admissions are compared at saturated limits too."""
    import random

    rng = random.Random(5)
    ref, comp = ReferencePoolState(limit=2500), CompiledPoolState(limit=2500)
    for pool in (ref, comp):
        pool.add_queue("a", 1, limit=400)
        pool.add_queue("b", 2, limit=900)
        pool.add_queue("c", 3)
        pool.add_queue("d", 3, limit=2**32)  # ties with c on priority; a limit beyond 32 bits

    def both(name: str, *args: Any, **kwargs: Any) -> Any:
        got = [outcome(lambda p=p: getattr(p, name)(*args, **kwargs)) for p in (ref, comp)]
        assert got[0] == got[1], f"{name}{args}{kwargs}: reference {got[0]} != compiled {got[1]}"
        return got[0]

    def saturated() -> set[str]:
        """The limits that are reached while due runs wait behind them."""
        snap = ref.snapshot()
        waiting = {queue for _, queue, scheduled, occupying in snap.runs if not occupying and scheduled <= 250.0}
        full = {name for name, _, limit, _ in snap.queues if limit is not None and ref.queue_occupied(name) >= limit}
        found = full & waiting
        if snap.limit is not None and ref.occupied >= snap.limit and waiting:
            found.add("pool")
        return found

    keys = range(40_000)
    longest = 0
    reached: set[str] = set()
    released = 0
    for step in range(30_000):
        roll = rng.random()
        key = rng.choice(keys)
        when = float(rng.randrange(200))
        if roll < 0.53:
            # mostly in order of creation, as the scheduler adds them; sometimes not
            both("add_run", step if rng.random() < 0.7 else key, rng.choice("aabcd"), when)
        elif roll < 0.63:
            both("reschedule", step - rng.randrange(1, 3000), when)
        elif roll < 0.68:
            both("remove_run", step - rng.randrange(1, 3000))
        elif roll < 0.70:
            both("release", step - rng.randrange(1, 3000))
        elif roll < 0.80:
            both("finish", rng.choice(keys) if rng.random() < 0.2 else step - rng.randrange(1, 3000))
        elif roll < 0.83:
            both("requeue", step - rng.randrange(1, 3000), when)
        elif roll < 0.85:
            both("occupy", key, rng.choice("abcd"))
        elif roll < 0.855:
            both("set_paused", rng.random() < 0.3)
        elif roll < 0.86:
            both("update_queue", rng.choice("abcd"), paused=rng.random() < 0.3)
        elif roll < 0.862:
            both("set_limit", rng.choice([None, 1500, 2500, 2500, 4000]))
        elif roll < 0.864:
            both("update_queue", "a", limit=rng.choice([None, 200, 400, 400]))
        else:
            queues = rng.choice([None, None, ["a"], ["b", "c"], ["d", "c"]])
            if step % 16 == 0:
                reached |= saturated()
            outcome_ = both("admit", float(rng.randrange(250)), rng.choice([0.0, 5.0]), queues, rng.choice([1, 1, 2, 3, None]))
            released += len(outcome_[1]) if outcome_[0] == "ok" else 0
        if step % 2000 == 0:
            longest = max(longest, *(ref.queue_length(q) for q in "abcd"))
            assert ref.snapshot() == comp.snapshot()
            for probe in (key, step - 1, step - 500):
                both("explain", probe, 100.0, 2.0)
            both("next_due", None)
    assert longest > 1000  # many blocks of entries per queue, not one
    assert reached >= {"pool", "a", "b"}, f"only {reached} saturated"  # admissions compared at full limits
    assert released > 1000
    # Reschedules back and forth among a few times: stale entries, and entries that come
    # back to life, pile up until a queue's entries are compacted.
    both("set_paused", False)
    both("update_queue", "c", paused=False)
    both("set_limit", None)
    waiting = [k for k, q, _, occupying in ref.snapshot().runs if q == "c" and not occupying]
    for step in range(20_000):
        if step % 50 == 49:
            both("admit", 3.0, 0.0, ["c"], 2)
        else:
            both("reschedule", rng.choice(waiting), float(rng.randrange(6)))
        if step % 2000 == 0:
            assert ref.snapshot() == comp.snapshot()
    assert ref.snapshot() == comp.snapshot()
    assert [ref.queue_length(q) for q in "abcd"] == [comp.queue_length(q) for q in "abcd"]
