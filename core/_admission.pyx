# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, binding=False
# distutils: language = c++
"""The compiled scheduling core: the same admission as `_reference`, on flat C++ storage.

One module, in files by concern (as asyncpg lays out its protocol):

    _records.pxi     the C++ headers it builds on, and its records
    _table.pxi       the run table: where every run lives
    _state.pxi       queues and runs: every change that is not an admission
    _admit.pxi       admission (the waterfall) and next_due
    _explain.pxi     explain and snapshot
    _admission.pyx   PoolState: its fields, and the API, each method a call into the files above

and C++ headers beside them, each stating its invariants: sb_time.hpp (times as ordered
ints), sb_entries.hpp (a queue's candidates in sorted blocks), sb_rules.hpp (limits,
readiness, queue order, explain's blockers), sb_platform.hpp (prefetch, huge pages),
sb_mutants.hpp (the mutation check's switch, off in every real build).

Limits and priorities are int64 (-1 for "no limit"); larger ones are refused, as the
reference refuses them (MAX_LIMIT, MAX_PRIORITY in _types.py).
"""

cimport cython

from shiftboss.core._types import UNCHANGED, Explanation, Snapshot

include "_records.pxi"
include "_table.pxi"
include "_state.pxi"
include "_admit.pxi"
include "_explain.pxi"


@cython.final
cdef class PoolState:
    cdef int64_t _limit           # SB_NO_LIMIT, or 0 .. 2**63 - 1
    cdef bint _paused
    cdef int64_t _occupied
    cdef Py_ssize_t _candidates
    cdef dict _idents             # name -> ident
    cdef list _names              # ident -> name
    cdef vector[Queue] _queues    # by ident; removed queues stay, not alive
    cdef vector[int] _walk        # live idents by (priority, name): the waterfall
    cdef vector[int] _rank        # by ident: its position in _walk
    cdef vector[uint64_t] _ready  # by position in _walk: a bit set while a queue takes part in admission
    cdef vector[uint32_t] _mark   # by ident: == _epoch when admit's worker serves it
    cdef uint32_t _epoch
    cdef vector[int64_t] _taken   # admit's scratch: keys in the order released
    cdef Table _table

    def __cinit__(self):
        self._table.cells = NULL
        self._table.count = 0
        _resize(&self._table, MIN_CAPACITY)

    def __init__(self, limit=None, paused=False):
        self._limit = _limit_in(limit, "limit")
        self._paused = bool(paused)
        self._occupied = 0
        self._candidates = 0
        self._idents = {}
        self._names = []
        self._epoch = 0

    def __dealloc__(self):
        cdef size_t i
        free(self._table.cells)
        self._table.cells = NULL
        for i in range(self._queues.size()):
            self._queues[i].runs.clear()

    # ------------------------------------------------------------ pool

    @property
    def limit(self):
        return _limit_out(self._limit)

    @property
    def paused(self):
        return self._paused

    @property
    def occupied(self):
        return self._occupied

    def set_limit(self, limit):
        self._limit = _limit_in(limit, "limit")

    def set_paused(self, paused):
        self._paused = bool(paused)

    # ------------------------------------------------------------ queues

    def add_queue(self, str name, priority, limit=None, paused=False):
        _add_queue(self, name, priority, limit, paused)

    def update_queue(self, str name, *, priority=None, limit=UNCHANGED, paused=None):
        _update_queue(self, name, priority, limit, paused)

    def rename_queue(self, str name, str new_name):
        _rename_queue(self, name, new_name)

    def remove_queue(self, str name):
        _remove_queue(self, name)

    def queues(self):
        cdef int ident
        return [self._names[ident] for ident in self._walk]

    def queue_occupied(self, str name):
        return self._queues[_ident(self, name)].occupied

    def queue_length(self, str name):
        return self._queues[_ident(self, name)].length

    def queue_limit(self, str name):
        return _limit_out(self._queues[_ident(self, name)].limit)

    # ------------------------------------------------------------ runs

    def __len__(self):
        return self._candidates

    def __contains__(self, key):
        if not isinstance(key, int):
            return False
        try:
            return _find(&self._table, <int64_t>key) != NULL
        except OverflowError:
            return False

    def is_occupying(self, int64_t key):
        cdef Cell* c = _find(&self._table, key)
        if c == NULL:
            raise KeyError(f"unknown run {key}")
        return c.state == OCCUPYING

    def add_run(self, int64_t key, str queue, double scheduled):
        _add_run(self, key, queue, scheduled)

    def remove_run(self, int64_t key):
        _remove_run(self, key)

    def reschedule(self, int64_t key, double scheduled):
        _reschedule(self, key, scheduled)

    def release(self, int64_t key):
        _release(self, key)

    def occupy(self, int64_t key, str queue):
        _occupy(self, key, queue)

    def finish(self, int64_t key):
        _finish(self, key)

    def requeue(self, int64_t key, double scheduled):
        _requeue(self, key, scheduled)

    # ------------------------------------------------------------ admission

    def admit(self, double now, double prefetch_seconds, queues=None, limit=None):
        return _admit(self, now, prefetch_seconds, queues, limit)

    def peek(self, double now, double prefetch_seconds, queues=None, limit=None):
        return _peek(self, now, prefetch_seconds, queues, limit)

    def next_due(self, queues=None):
        return _next_due(self, queues)

    def explain(self, int64_t key, double now, double prefetch_seconds):
        return _explain(self, key, now, prefetch_seconds)

    # ------------------------------------------------------------ snapshots

    def snapshot(self):
        return _snapshot(self)

    @classmethod
    def from_snapshot(cls, snap):
        state = cls(snap.limit, snap.paused)
        for name, priority, limit, paused in snap.queues:
            state.add_queue(name, priority, limit, paused)
        for key, queue, scheduled, occupying in snap.runs:
            if occupying:
                state.occupy(key, queue)
            else:
                state.add_run(key, queue, scheduled)
        return state
