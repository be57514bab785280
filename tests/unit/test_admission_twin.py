"""The compiled core against the reference: one state machine drives both with the same
operations, compares every result (value, or exception type and message), and after each
step compares the whole state: snapshot, counts, next_due, and explain of every run.

Operations act on things that exist. Queues come from a Bundle and leave it when removed;
runs come from a Bundle, and the rules that need a run in one state (release, reschedule,
finish, requeue) pick among the reference's runs in that state, since a bundle cannot be
narrowed by state. Misuse (a run in the wrong state, an unknown queue, a refused value)
has rules of its own, so errors are compared too without crowding out calls that succeed.

A differential test that never reaches a saturated limit proves nothing about limits, so
the test records what it reached (hypothesis.event, for --hypothesis-show-statistics, and
a counter) and fails when a run of it misses any of REQUIRED. tests/mutants.py checks that
it catches deliberate bugs built into the compiled core (`make mutants`).

Profiles (SHIFTBOSS_TWIN_PROFILE): `ci` for make test, `long` for a deeper search,
`mutant` for the mutation check (no shrinking: it wants the verdict, not the example).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, event, settings, strategies as st, target
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, precondition, rule, run_state_machine_as_test

from shiftboss.core import BLOCKERS, MAX_LIMIT, MAX_PRIORITY, UNCHANGED, ReferencePoolState, compiled_pool_state

#: The compiled core to test instead of the installed one: a path to its extension module.
CORE_UNDER_TEST = "SHIFTBOSS_CORE_UNDER_TEST"
#: What a failure of the comparison says; the mutation check looks for it.
DIVERGENCE = "compiled core diverges from the reference"

# The target phase would spend half of a short run hill-climbing one lineage of examples
# (towards more REQUIRED labels at once); plain generation covers them more evenly, so
# only the long profile uses it.
#
# `ci` and `mutant` are derandomized: the same examples every run, chosen to reach every
# REQUIRED label, so a check that passed does not fail later on luck (a random run of
# `mutant` once missed "queue and pool limits both reached", and with it a mutant). The
# long profile searches afresh each run.
PROFILES = {
    "ci": settings(max_examples=300, stateful_step_count=50, phases=[Phase.explicit, Phase.generate, Phase.shrink], derandomize=True, database=None),
    "long": settings(max_examples=5000, stateful_step_count=100),
    "mutant": settings(max_examples=500, stateful_step_count=50, phases=[Phase.explicit, Phase.generate], derandomize=True, database=None),
}


def core_under_test() -> type:
    path = os.environ.get(CORE_UNDER_TEST)
    if not path:
        return compiled_pool_state()
    spec = importlib.util.spec_from_file_location("shiftboss.core._admission", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PoolState  # type: ignore[no-any-return]


Core = core_under_test()

# ------------------------------------------------------------------ values

NAMES = ["default", "a", "b", "c", "d", "e", "Z", "ü"]  # "Z" < "a": name order breaks priority ties
HUGE = [2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**53 + 1, MAX_LIMIT]
REFUSED_LIMITS = [-1, -(2**63), MAX_LIMIT + 1, 2**64]
REFUSED_PRIORITIES = [0, -1, MAX_PRIORITY + 1, 2**64]
# Small limits saturate; None is "no limit"; the huge ones (one draw in six) must be held
# exactly, beyond 32 bits.
huge = st.sampled_from(HUGE)


def mostly(common: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(*[st.sampled_from(common)] * 5, huge)


pool_limits = mostly([None, 1, 2, 2, 3, 3, 4, 5, 0])
queue_limits = mostly([None, None, 0, 1, 1, 2, 2, 3])
worker_limits = mostly([None, 1, 1, 2, 2, 3, 5, 0, -1])
priorities = mostly([1, 1, 1, 2, 2, 3, 4])
grid = st.integers(-3, 12).map(float)  # a coarse grid: equal times are common
odd_times = st.sampled_from(
    [-0.0, 0.5, 2.5, -0.5, 0.1 + 0.2, 5e-324, 2.0**53, 2.0**53 + 2, 1e18, 1e300, -1e300, math.inf, -math.inf]
)
times = st.one_of(grid, grid, grid, odd_times, st.floats(-50, 50, allow_nan=False))
nows = st.one_of(grid, grid, st.sampled_from([-0.5, 2.5, 1e18, 1e300]), st.floats(-50, 50, allow_nan=False))
prefetches = st.sampled_from([0.0, 0.0, 1.0, 2.5, 5.0, 10.0, -1.0])
EDGE_KEYS = [-(2**63), -1, 2**31 - 1, 2**32, 2**53 + 1, 2**63 - 1]
# None: the next creation sequence, as the scheduler numbers runs; else an edge or a random key.
new_keys = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(EDGE_KEYS), st.integers(-(2**63), 2**63 - 1))

# ------------------------------------------------------------------ what a run reached

REACHED: Counter[str] = Counter()
REQUIRED = [
    "admit: released runs",
    "admit: pool limit saturated",
    "admit: queue limit saturated",
    "admit: worker limit reached",
    "admit: paused pool",
    "admit: paused queue passed over",
    "admit: priority tie between queues with due runs",
    "admit: time tie within a queue",
    "admit: released under a limit of 2**31 or more",
    "release: succeeded",
    "reschedule: succeeded",
    "finish: succeeded",
    "requeue: succeeded",
    "occupy: succeeded",
    "remove_run: succeeded",
    "remove_queue: succeeded",
    "rename_queue: succeeded",
    "update_queue: priority changed",
    "rebuilt from snapshot",
    "refused value",
    "explain: queue and pool limits both reached",
    *(f"explain: {blocker}" for blocker in BLOCKERS),
]
REQUIRED_SET = frozenset(REQUIRED)


def outcome(pool: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A call's value, or its exception's type and message: both cores must agree on all."""
    try:
        return ("ok", getattr(pool, name)(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - any difference, even an unexpected error, is a divergence
        return ("raised", type(exc).__name__, str(exc))


def due(snap: Any, horizon: float) -> dict[str, list[tuple[float, int]]]:
    """Each queue's candidates due by `horizon`, in the order admission takes them."""
    found: dict[str, list[tuple[float, int]]] = {name: [] for name, *_ in snap.queues}
    for key, queue, scheduled, occupying in snap.runs:
        if not occupying and scheduled <= horizon:
            found[queue].append((scheduled, key))
    return {name: sorted(entries) for name, entries in found.items()}


def occupied(snap: Any) -> Counter[str]:
    return Counter(queue for _, queue, _, occupying in snap.runs if occupying)


class Twin(RuleBasedStateMachine):
    queues = Bundle("queues")
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.ref: Any = None
        self.core: Any = None
        self.now = 0.0
        self.prefetch = 0.0
        self.next_key = 0
        self.rebuilds = 0
        self.seen: set[str] = set()  # the labels of REQUIRED this example reached

    # ------------------------------------------------------------ comparing

    def reached(self, label: str) -> None:
        REACHED[label] += 1
        if label not in self.seen:
            self.seen.add(label)
            event(label)

    def both(self, name: str, *args: Any, counted: bool = True, **kwargs: Any) -> Any:
        ref = outcome(self.ref, name, args, kwargs)
        got = outcome(self.core, name, args, kwargs)
        assert ref == got, f"{DIVERGENCE}: {name}{args}{kwargs or ''}: reference {ref!r}, compiled {got!r}"
        if counted:
            REACHED[f"call: {ref[0]}"] += 1
        if ref[0] == "ok":
            if counted:
                self.reached(f"{name}: succeeded")
            return ref[1]
        return None

    def succeeded(self, name: str, *args: Any, **kwargs: Any) -> bool:
        before = REACHED[f"{name}: succeeded"]
        self.both(name, *args, **kwargs)
        return REACHED[f"{name}: succeeded"] > before

    def new_key(self, choice: int | None) -> int:
        if choice is None:
            self.next_key += 1
            return self.next_key - 1
        return choice

    # ------------------------------------------------------------ the pool

    @initialize(
        target=queues,
        limit=pool_limits,
        paused=st.sampled_from([False] * 7 + [True]),
        others=st.lists(st.tuples(st.sampled_from([1, 1, 2, 3]), queue_limits), max_size=3),
    )
    def start(self, limit: int | None, paused: bool, others: list[tuple[int, int | None]]) -> Any:
        """A pool with its default queue and up to three more, often on equal priorities."""
        self.ref, self.core = ReferencePoolState(limit, paused), Core(limit, paused)
        names = ["default", *NAMES[1 : len(others) + 1]]
        for name, (priority, queue_limit) in zip(names, [(1, None), *others]):
            self.both("add_queue", name, priority, queue_limit, False, counted=False)
        return multiple(*names)

    @rule(limit=pool_limits)
    def set_limit(self, limit: int | None) -> None:
        self.both("set_limit", limit)

    @rule(paused=st.sampled_from([False, False, False, True]))
    def set_paused(self, paused: bool) -> None:
        self.both("set_paused", paused)

    @precondition(lambda self: self.rebuilds < 2 and len(self.ref) + self.ref.occupied >= 3)
    @rule()
    def rebuild(self) -> None:
        """The scheduler rebuilds its admission state from the database after a failure."""
        self.rebuilds += 1
        snap = self.ref.snapshot()
        self.ref = ReferencePoolState.from_snapshot(snap)
        self.core = Core.from_snapshot(self.core.snapshot())
        self.reached("rebuilt from snapshot")

    # ------------------------------------------------------------ queues

    @precondition(lambda self: len(self.ref.queues()) < len(NAMES))
    @rule(target=queues, data=st.data(), priority=priorities, limit=queue_limits, paused=st.sampled_from([False, False, False, True]))
    def add_queue(self, data: st.DataObject, priority: int, limit: int | None, paused: bool) -> Any:
        name = data.draw(st.sampled_from([n for n in NAMES if n not in self.ref.queues()]), label="name")
        taken = sorted({p for _, p, _, _ in self.ref.snapshot().queues})
        if taken and data.draw(st.booleans(), label="tie"):
            priority = data.draw(st.sampled_from(taken), label="priority of another queue")
        if self.succeeded("add_queue", name, priority, limit, paused):
            return name
        return multiple()

    @rule(
        name=queues,
        priority=st.none() | priorities,
        limit=st.just(UNCHANGED) | queue_limits,
        paused=st.none() | st.booleans(),
    )
    def update_queue(self, name: str, priority: int | None, limit: Any, paused: bool | None) -> None:
        before = self.ref.snapshot().queues
        if self.succeeded("update_queue", name, priority=priority, limit=limit, paused=paused) and priority is not None:
            if any(n == name and p != priority for n, p, *_ in before):
                self.reached("update_queue: priority changed")

    @rule(name=queues, paused=st.booleans())
    def pause_queue(self, name: str, paused: bool) -> None:
        self.both("update_queue", name, paused=paused)

    @rule(name=queues, other=queues)
    def share_priority(self, name: str, other: str) -> None:
        """Two queues on one priority: name order decides between them."""
        priority = {n: p for n, p, _, _ in self.ref.snapshot().queues}.get(other, 1)
        self.update_queue(name, priority, UNCHANGED, None)

    @rule(target=queues, name=consumes(queues), data=st.data())
    def rename_queue(self, name: str, data: st.DataObject) -> Any:
        """A queue under a new name (a free one, or sometimes a taken one: refused alike);
        between equal priorities its place may change, as names break the tie."""
        new_name = data.draw(st.sampled_from(NAMES), label="new name")
        if self.succeeded("rename_queue", name, new_name):
            return new_name
        return name if name in self.ref.queues() else multiple()

    @precondition(lambda self: len(self.ref.queues()) > 1)
    @rule(name=consumes(queues))
    def remove_queue(self, name: str) -> None:
        self.both("remove_queue", name)

    @rule(name=st.sampled_from(NAMES), data=st.data())
    def any_queue(self, name: str, data: st.DataObject) -> None:
        """A queue that may not exist (removed, or never added): errors must match."""
        call = data.draw(st.sampled_from(["queue_occupied", "queue_length", "queue_limit", "add_run", "occupy", "add_queue"]))
        if call == "add_run":
            self.both(call, self.new_key(None), name, 0.0)
        elif call == "occupy":
            self.both(call, self.new_key(None), name)
        elif call == "add_queue":
            self.both(call, name, 1)
        else:
            self.both(call, name)

    # ------------------------------------------------------------ runs

    @rule(target=runs, key=new_keys, queue=queues, scheduled=times)
    def add_run(self, key: int | None, queue: str, scheduled: float) -> Any:
        key = self.new_key(key)
        self.both("add_run", key, queue, scheduled)
        return key

    @rule(target=runs, key=new_keys, queue=queues, scheduled=times)
    def add_another_run(self, key: int | None, queue: str, scheduled: float) -> Any:
        """Runs are what admission works on: twice the weight of any other rule."""
        return self.add_run(key, queue, scheduled)

    @rule(target=runs, queue=queues, scheduled=st.lists(times, min_size=2, max_size=8))
    def add_runs(self, queue: str, scheduled: list[float]) -> Any:
        """A burst, as a schedule makes: queues deep enough to saturate, and equal times."""
        keys = []
        for when in scheduled:
            keys.append(self.new_key(None))
            self.both("add_run", keys[-1], queue, when)
        return multiple(*keys)

    @rule(target=runs, key=new_keys, queue=queues)
    def occupy(self, key: int | None, queue: str) -> Any:
        """A run found holding a slot (a rebuild from the database)."""
        key = self.new_key(key)
        self.both("occupy", key, queue)
        return key

    def keys(self, occupying: bool) -> list[int]:
        return [key for key, _, _, holds in self.ref.snapshot().runs if holds == occupying]

    @precondition(lambda self: len(self.ref) > 0)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.both("release", data.draw(st.sampled_from(self.keys(occupying=False)), label="candidate"))

    @precondition(lambda self: len(self.ref) > 0)
    @rule(data=st.data(), scheduled=times)
    def reschedule(self, data: st.DataObject, scheduled: float) -> None:
        self.both("reschedule", data.draw(st.sampled_from(self.keys(occupying=False)), label="candidate"), scheduled)

    @precondition(lambda self: self.ref.occupied > 0)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        self.both("finish", data.draw(st.sampled_from(self.keys(occupying=True)), label="occupying"))

    @precondition(lambda self: self.ref.occupied > 0)
    @rule(data=st.data(), scheduled=times)
    def requeue(self, data: st.DataObject, scheduled: float) -> None:
        self.both("requeue", data.draw(st.sampled_from(self.keys(occupying=True)), label="occupying"), scheduled)

    @rule(key=runs)
    def remove_run(self, key: int) -> None:
        self.both("remove_run", key)

    @rule(key=runs, call=st.sampled_from(["release", "reschedule", "finish", "requeue", "is_occupying", "occupy", "add_run"]))
    def any_run(self, key: int, call: str) -> None:
        """A run in whatever state it is now, or gone: errors must match."""
        queue = self.ref.queues()[0]
        args = {"reschedule": (key, 1.0), "requeue": (key, 1.0), "occupy": (key, queue), "add_run": (key, queue, 1.0)}
        self.both(call, *args.get(call, (key,)))

    @rule(data=st.data())
    def refused(self, data: st.DataObject) -> None:
        """Values neither core can hold are refused alike, and change nothing."""
        name = self.ref.queues()[0]
        bad_limit = data.draw(st.sampled_from(REFUSED_LIMITS), label="limit")
        bad_priority = data.draw(st.sampled_from(REFUSED_PRIORITIES), label="priority")
        bad_time = data.draw(st.sampled_from([math.nan, -math.nan]), label="time")
        call = data.draw(st.integers(0, 10), label="call")
        before = self.ref.snapshot()
        if call == 0:
            self.both("set_limit", bad_limit)
        elif call == 1:
            self.both("add_queue", "new", 1, bad_limit)
        elif call == 2:
            self.both("add_queue", "new", bad_priority)
        elif call == 3:
            self.both("update_queue", name, priority=1, limit=bad_limit)
        elif call == 4:
            self.both("update_queue", name, priority=bad_priority, paused=True)
        elif call == 5:
            self.both("add_run", self.new_key(None), name, bad_time)
        elif call == 6:
            self.both("admit", self.now, self.prefetch, None, bad_limit)
        elif call == 7:
            self.both("admit", bad_time, 0.0, None, None)
        elif call == 8:
            self.both("admit", math.inf, -math.inf, None, None)
        elif call == 9 and len(self.ref):
            self.both("reschedule", self.keys(occupying=False)[0], bad_time)
        elif call == 10:
            ref, got = outcome(ReferencePoolState, "__call__", (bad_limit,), {}), outcome(Core, "__call__", (bad_limit,), {})
            assert ref[0] == got[0] == "raised" and ref[1:] == got[1:], f"{DIVERGENCE}: PoolState({bad_limit}): {ref!r}, {got!r}"
        assert self.ref.snapshot() == before, "a refused call changed the reference's state"
        self.reached("refused value")

    # ------------------------------------------------------------ admission

    @rule(now=nows, prefetch=prefetches, limit=worker_limits, data=st.data())
    def admit(self, now: float, prefetch: float, limit: int | None, data: st.DataObject) -> None:
        names = self.ref.queues() + ["nowhere"]
        some = st.lists(st.sampled_from(names), min_size=1, max_size=len(names) + 1)
        served = data.draw(st.one_of(st.none(), st.none(), some), label="queues")
        before = self.ref.snapshot()
        # A look first: it changes neither core, and says exactly what admission then does.
        core_before = self.core.snapshot()
        peeked = self.both("peek", now, prefetch, served, limit)
        assert self.ref.snapshot() == before and self.core.snapshot() == core_before, "peek changed a core's state"
        got = self.both("admit", now, prefetch, served, limit)
        assert peeked is None or peeked == got, f"{DIVERGENCE}: peek said {peeked!r}, admit released {got!r}"
        self.now, self.prefetch = now, prefetch
        self.note_admission(before, now + prefetch, served, limit, got or [])

    @rule(now=nows, prefetch=prefetches, limit=worker_limits, data=st.data())
    def admit_again(self, now: float, prefetch: float, limit: int | None, data: st.DataObject) -> None:
        self.admit(now, prefetch, limit, data)

    @rule(data=st.data())
    def next_due(self, data: st.DataObject) -> None:
        names = self.ref.queues() + ["nowhere"]
        self.both("next_due", data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3), label="queues"))

    @rule(key=runs, now=nows, prefetch=prefetches)
    def explain(self, key: int, now: float, prefetch: float) -> None:
        self.both("explain", key, now, prefetch)

    def note_admission(self, before: Any, horizon: float, served: list[str] | None, limit: int | None, got: list[int]) -> None:
        after = self.ref.snapshot()
        settings_of = {name: (priority, qlimit, paused) for name, priority, qlimit, paused in before.queues}
        serving = [name for name in settings_of if served is None or name in served]
        live = [name for name in serving if not settings_of[name][2]]
        due_before, due_after = due(before, horizon), due(after, horizon)
        held = occupied(after)
        if got:
            self.reached("admit: released runs")
        if before.paused:
            self.reached("admit: paused pool")
            return
        if before.limit is not None and self.ref.occupied >= before.limit and any(due_after[name] for name in live):
            self.reached("admit: pool limit saturated")
        for name in live:
            qlimit = settings_of[name][1]
            if qlimit is not None and held[name] >= qlimit and due_after[name]:
                self.reached("admit: queue limit saturated")
        if any(settings_of[name][2] and due_before[name] for name in serving):
            self.reached("admit: paused queue passed over")
        ranks = [settings_of[name][0] for name in live if due_before[name]]
        if len(ranks) != len(set(ranks)):
            self.reached("admit: priority tie between queues with due runs")
        if any(len({s for s, _ in due_before[name]}) < len(due_before[name]) for name in live):
            self.reached("admit: time tie within a queue")
        if limit is not None and limit > 0 and len(got) == limit:
            self.reached("admit: worker limit reached")
        queue_of = {key: queue for key, queue, *_ in after.runs}
        for key in got:
            if (before.limit or 0) >= 2**31 or (settings_of[queue_of[key]][1] or 0) >= 2**31:
                self.reached("admit: released under a limit of 2**31 or more")
                break

    # ------------------------------------------------------------ after every step

    @invariant()
    def same_state(self) -> None:
        if self.ref is None:
            return
        snap, other = self.ref.snapshot(), self.core.snapshot()
        assert snap == other, f"{DIVERGENCE}: snapshot: reference {snap!r}, compiled {other!r}"
        for name in ("__len__", "queues", "next_due"):
            self.both(name, counted=False)
        for name in ("limit", "paused", "occupied"):
            ref, got = getattr(self.ref, name), getattr(self.core, name)
            assert ref == got, f"{DIVERGENCE}: {name}: reference {ref!r}, compiled {got!r}"
        for name, *_ in snap.queues:
            for call in ("queue_occupied", "queue_length", "queue_limit"):
                self.both(call, name, counted=False)
        pool_full = snap.limit is not None and self.ref.occupied >= snap.limit
        for key, *_ in snap.runs:
            self.both("is_occupying", key, counted=False)
            explained = self.both("explain", key, self.now, self.prefetch, counted=False)
            self.reached(f"explain: {explained.blocker}")
            if explained.blocker == "queue_limit" and pool_full:
                self.reached("explain: queue and pool limits both reached")

    def teardown(self) -> None:
        # Steer the search towards examples that reach much at once: those are the ones
        # where a rule bent in one place shows in another.
        target(float(len(self.seen & REQUIRED_SET)), label="required labels reached")


def test_compiled_core_behaves_as_the_reference() -> None:
    profile = os.environ.get("SHIFTBOSS_TWIN_PROFILE", "ci")
    REACHED.clear()
    run_state_machine_as_test(
        Twin,
        settings=settings(PROFILES[profile], deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
    missed = [label for label in REQUIRED if not REACHED[label]]
    assert not missed, f"the differential test did not reach: {missed}"
    calls = REACHED["call: ok"] + REACHED["call: raised"]
    assert REACHED["call: raised"] <= 0.25 * calls, f"{REACHED['call: raised']} of {calls} calls compared two errors"
    if os.environ.get("SHIFTBOSS_TWIN_REPORT"):
        for label in [*REQUIRED, "call: ok", "call: raised"]:
            print(f"{REACHED[label]:>8}  {label}")
