"""The scheduling core, reference and compiled alike: the seeds' examples and the edges."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shiftboss.core import COMPILED, ReferencePoolState, compiled_pool_state

IMPLEMENTATIONS = [ReferencePoolState, compiled_pool_state()]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["reference", "compiled"])
def Pool(request: pytest.FixtureRequest) -> type:
    return request.param


def test_compiled_core_is_loaded_by_default() -> None:
    assert COMPILED
    code = "import shiftboss.core as c; print(c.COMPILED, c.PoolState.__module__)"
    env = {**os.environ, "SHIFTBOSS_PURE_PYTHON_CORE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "shiftboss.core._reference"]


def test_pool_limit_five_with_three_occupied_releases_two(Pool: type) -> None:
    pool = Pool(limit=5)
    pool.add_queue("default", 1)
    for key in range(3):
        pool.occupy(100 + key, "default")
    for key in range(10):
        pool.add_run(key, "default", 0.0)
    assert pool.admit(now=10.0, prefetch_seconds=0) == [0, 1]
    assert pool.occupied == 5
    assert pool.admit(now=10.0, prefetch_seconds=0) == []


def test_queue_limit_stops_a_queue_and_lets_the_next_drain(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("critical", 1, limit=1)
    pool.add_queue("high", 5, limit=3)
    pool.add_queue("low", 10)
    for key, queue in enumerate(["critical"] * 3 + ["high"] * 4 + ["low"] * 2):
        pool.add_run(key, queue, 0.0)
    assert pool.admit(1.0, 0) == [0, 3, 4, 5, 7, 8]
    assert (pool.queue_occupied("critical"), pool.queue_occupied("high"), pool.queue_occupied("low")) == (1, 3, 2)
    pool.finish(0)
    assert pool.admit(1.0, 0) == [1]


def test_priority_beats_lateness(Pool: type) -> None:
    pool = Pool(limit=1)
    pool.add_queue("first", 1)
    pool.add_queue("second", 2)
    pool.add_run(1, "second", 0.0)  # very late
    pool.add_run(2, "first", 50.0)  # just due
    assert pool.admit(100.0, 0) == [2]


def test_within_a_queue_earliest_start_then_creation_order(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("q", 1)
    pool.add_run(3, "q", 5.0)
    pool.add_run(1, "q", 9.0)
    pool.add_run(2, "q", 5.0)
    assert pool.admit(10.0, 0) == [2, 3, 1]


def test_new_run_in_higher_queue_goes_first_at_next_admission(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("high", 1)
    pool.add_queue("low", 2)
    for key in range(3):
        pool.add_run(key, "low", 0.0)
    assert pool.admit(1.0, 0, limit=1) == [0]
    pool.add_run(10, "high", 1.0)
    assert pool.admit(1.0, 0, limit=2) == [10, 1]


def test_paused_pool_and_paused_queue(Pool: type) -> None:
    pool = Pool(paused=True)
    pool.add_queue("a", 1)
    pool.add_queue("b", 2)
    pool.add_run(1, "a", 0.0)
    pool.add_run(2, "b", 0.0)
    assert pool.admit(1.0, 0) == []
    assert pool.next_due() is None
    pool.set_paused(False)
    pool.update_queue("a", paused=True)
    assert pool.admit(1.0, 0) == [2]
    assert pool.explain(1, 1.0, 0).blocker == "queue_paused"
    pool.update_queue("a", paused=False)
    assert pool.admit(1.0, 0) == [1]


def test_prefetch_window(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 105.0)
    assert pool.admit(100.0, 0) == []
    assert pool.explain(1, 100.0, 0).blocker == "not_due"
    assert pool.next_due() == 105.0
    assert pool.admit(100.0, 10) == [1]


def test_worker_limit_and_queue_subset_keep_pool_order(Pool: type) -> None:
    pool = Pool()
    for name, priority in (("a", 1), ("b", 2), ("c", 3)):
        pool.add_queue(name, priority)
    for key, queue in enumerate("cbacba"):
        pool.add_run(key, queue, float(key))
    assert pool.admit(10.0, 0, queues=["c", "a", "nope"], limit=3) == [2, 5, 0]
    assert pool.admit(10.0, 0, limit=0) == []


def test_two_workers_in_turn_never_exceed_limits(Pool: type) -> None:
    pool = Pool(limit=3)
    pool.add_queue("q", 1, limit=2)
    pool.add_queue("r", 2)
    for key in range(10):
        pool.add_run(key, "q" if key < 5 else "r", 0.0)
    first = pool.admit(1.0, 0, limit=2)
    second = pool.admit(1.0, 0, limit=5)
    assert first == [0, 1] and second == [5]
    assert pool.occupied == 3


def test_requeue_finish_and_remove_free_slots(Pool: type) -> None:
    pool = Pool(limit=1)
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 0.0)
    pool.add_run(2, "q", 1.0)
    assert pool.admit(5.0, 0) == [1]
    pool.requeue(1, 3.0)
    assert pool.occupied == 0 and len(pool) == 2
    assert pool.admit(5.0, 0) == [2]
    pool.remove_run(2)  # an occupying run removed frees its slot
    assert pool.admit(5.0, 0) == [1]
    pool.finish(1)
    assert pool.occupied == 0 and len(pool) == 0


def test_lowering_a_limit_below_occupied_releases_nothing(Pool: type) -> None:
    pool = Pool(limit=3)
    pool.add_queue("q", 1)
    for key in range(5):
        pool.add_run(key, "q", 0.0)
    assert len(pool.admit(1.0, 0)) == 3
    pool.set_limit(1)
    pool.finish(0)
    assert pool.admit(1.0, 0) == []
    pool.set_limit(None)
    assert pool.admit(1.0, 0) == [3, 4]


def test_reschedule_and_release(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 0.0)
    pool.add_run(2, "q", 1.0)
    pool.reschedule(1, 50.0)
    assert pool.admit(10.0, 0) == [2]
    pool.release(1)
    assert pool.is_occupying(1) and pool.admit(100.0, 0) == []


def test_explain_every_blocker(Pool: type) -> None:
    pool = Pool(limit=2)
    pool.add_queue("q", 1, limit=1)
    pool.add_queue("r", 2)
    pool.add_run(1, "q", 0.0)
    pool.add_run(2, "q", 0.0)
    pool.add_run(3, "r", 0.0)
    pool.add_run(4, "r", 0.0)
    pool.add_run(5, "r", 0.0)
    assert pool.explain(1, 1.0, 0).blocker == "none"
    explained = pool.explain(2, 1.0, 0)
    assert (explained.blocker, explained.queue_position, explained.pool_position) == ("runs_ahead", 1, 1)
    assert pool.explain(4, 1.0, 0).blocker == "runs_ahead"
    assert pool.admit(1.0, 0) == [1, 3]
    assert pool.explain(1, 1.0, 0).blocker == "released"
    assert pool.explain(2, 1.0, 0).blocker == "queue_limit"
    assert pool.explain(4, 1.0, 0).blocker == "pool_limit"
    assert "2/2" in pool.explain(4, 1.0, 0).message
    pool.set_paused(True)
    assert pool.explain(4, 1.0, 0).blocker == "pool_paused"


def test_snapshot_round_trip(Pool: type) -> None:
    pool = Pool(limit=4, paused=True)
    pool.add_queue("a", 2, limit=3)
    pool.add_queue("b", 1, paused=True)
    pool.add_run(1, "a", 5.0)
    pool.occupy(2, "b")
    again = Pool.from_snapshot(pool.snapshot())
    assert again.snapshot() == pool.snapshot()
    assert again.queues() == ["b", "a"] and again.occupied == 1


def test_remove_queue_drops_its_runs(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("a", 1)
    pool.add_queue("b", 2)
    pool.add_run(1, "a", 0.0)
    pool.occupy(2, "a")
    pool.add_run(3, "b", 0.0)
    pool.remove_queue("a")
    assert 1 not in pool and 2 not in pool and pool.occupied == 0
    assert pool.admit(1.0, 0) == [3]


def test_errors_are_the_same_in_both(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 0.0)
    with pytest.raises(ValueError):
        pool.add_run(1, "q", 0.0)
    with pytest.raises(ValueError):
        pool.add_queue("q", 2)
    with pytest.raises(KeyError):
        pool.add_run(2, "missing", 0.0)
    with pytest.raises(KeyError):
        pool.finish(1)
    with pytest.raises(KeyError):
        pool.remove_run(99)
    with pytest.raises(KeyError):
        pool.reschedule(99, 1.0)
    with pytest.raises(ValueError):
        pool.set_limit(-1)
    with pytest.raises(ValueError):
        pool.add_queue("z", 0)
    with pytest.raises(ValueError):
        Pool(limit=-2)


def test_limits_beyond_32_bits_are_held_exactly(Pool: type) -> None:
    """2**32 once became 0 in the compiled core, which then admitted nothing."""
    pool = Pool(limit=2**32)
    pool.add_queue("q", 2**40, limit=2**32)
    pool.add_queue("r", 2**63 - 1, limit=2**63 - 1)
    for key in range(3):
        pool.add_run(key, "q" if key else "r", 0.0)
    assert pool.admit(1.0, 0, limit=2**63 - 1) == [1, 2, 0]
    assert (pool.limit, pool.queue_limit("q"), pool.queue_limit("r")) == (2**32, 2**32, 2**63 - 1)
    assert pool.snapshot().queues == [("q", 2**40, 2**32, False), ("r", 2**63 - 1, 2**63 - 1, False)]
    pool.set_limit(2**63 - 1)
    assert pool.limit == 2**63 - 1


def test_limits_and_priorities_beyond_the_bound_are_refused_naming_it(Pool: type) -> None:
    from shiftboss.core import MAX_LIMIT, MAX_PRIORITY

    bound = r"must be at most 9223372036854775807 \(2\*\*63 - 1\), got 9223372036854775808"
    assert MAX_LIMIT == MAX_PRIORITY == 2**63 - 1
    with pytest.raises(ValueError, match=f"limit {bound}"):
        Pool(limit=2**63)
    pool = Pool()
    with pytest.raises(ValueError, match=f"limit {bound}"):
        pool.set_limit(2**63)
    with pytest.raises(ValueError, match=f"priority {bound}"):
        pool.add_queue("q", 2**63)
    with pytest.raises(ValueError, match=f"limit {bound}"):
        pool.add_queue("q", 1, limit=2**63)
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 0.0)
    with pytest.raises(ValueError, match=f"limit {bound}"):
        pool.admit(1.0, 0, limit=2**63)
    assert pool.admit(1.0, 0, limit=-(2**70)) == []  # any limit below 1 admits nothing
    assert pool.queues() == ["q"] and pool.limit is None


def test_a_refused_update_changes_nothing(Pool: type) -> None:
    pool = Pool()
    pool.add_queue("a", 1)
    pool.add_queue("b", 2, limit=3)
    before = pool.snapshot()
    with pytest.raises(ValueError):
        pool.update_queue("b", priority=1, limit=-1)
    with pytest.raises(ValueError):
        pool.update_queue("b", priority=0, paused=True)
    assert pool.snapshot() == before


def test_nan_times_are_refused(Pool: type) -> None:
    """NaN is before nor after any time: no waterfall could place it."""
    nan = float("nan")
    pool = Pool()
    pool.add_queue("q", 1)
    pool.add_run(1, "q", 0.0)
    pool.occupy(2, "q")
    before = pool.snapshot()
    with pytest.raises(ValueError, match="scheduled must be a number, got nan"):
        pool.add_run(3, "q", nan)
    with pytest.raises(ValueError, match="scheduled must be a number"):
        pool.reschedule(1, nan)
    with pytest.raises(ValueError, match="scheduled must be a number"):
        pool.requeue(2, nan)
    with pytest.raises(ValueError, match="now \\+ prefetch_seconds must be a number, got inf \\+ -inf"):
        pool.admit(float("inf"), float("-inf"))
    with pytest.raises(ValueError, match="now \\+ prefetch_seconds must be a number"):
        pool.explain(1, nan, 0.0)
    assert pool.snapshot() == before
    assert pool.admit(float("inf"), 0.0) == [1]  # infinite times are times


def test_prefect_work_queue_rename_keeps_its_runs_slots_and_place(Pool: type) -> None:
    """A queue renamed (Prefect's work queue update of `name`) keeps its waiting runs, the
    slots its runs hold, its priority and limit; the old name is unknown from then on."""
    pool = Pool(limit=3)
    pool.add_queue("default", 1, limit=2)
    pool.add_queue("low", 2)
    pool.occupy(100, "default")
    pool.add_run(1, "default", 0.0)
    pool.add_run(2, "default", 0.0)
    pool.add_run(3, "low", 0.0)
    pool.rename_queue("default", "primary")
    assert pool.queues() == ["primary", "low"]
    assert (pool.queue_occupied("primary"), pool.queue_length("primary"), pool.queue_limit("primary")) == (1, 2, 2)
    with pytest.raises(KeyError, match="unknown queue 'default'"):
        pool.queue_length("default")
    with pytest.raises(ValueError, match="queue 'low' already exists"):
        pool.rename_queue("primary", "low")
    with pytest.raises(KeyError, match="unknown queue 'nope'"):
        pool.rename_queue("nope", "other")
    assert pool.admit(1.0, 0, ["primary"]) == [1]  # its limit of 2 with one held: one more
    assert pool.admit(1.0, 0) == [3]  # primary is full; the pool's third slot goes down the waterfall
    pool.finish(100)
    assert pool.admit(1.0, 0) == [2]
    assert pool.explain(2, 1.0, 0).queue == "primary"
    assert [(q[0], q[1]) for q in pool.snapshot().queues] == [("primary", 1), ("low", 2)]
    assert sorted((run[0], run[1]) for run in pool.snapshot().runs) == [(1, "primary"), (2, "primary"), (3, "low")]
