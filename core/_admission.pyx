# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""The compiled scheduling core: the same admission as `_reference`, on C++ containers.

Candidates of each queue live in an ordered std::set of (scheduled, key), so the head of
a queue, an insert and a removal are O(log n); every run has a record in one
std::unordered_map. Limits are ints with -1 for "none".
"""

from cython.operator cimport dereference as deref, preincrement as inc
from libcpp cimport bool as cbool
from libcpp.pair cimport pair
from libcpp.set cimport set as cset
from libcpp.unordered_map cimport unordered_map
from libc.stdint cimport int64_t

from shiftboss.core._types import UNCHANGED, Explanation, Snapshot

ctypedef pair[double, int64_t] Entry

cdef struct RunRec:
    int queue
    double scheduled
    cbool occupying


cdef inline int _limit_in(object limit, str field) except -2:
    if limit is None:
        return -1
    cdef long value = limit
    if value < 0:
        raise ValueError(f"{field} must not be negative, got {limit}")
    return <int>value


cdef inline object _limit_out(int limit):
    return None if limit < 0 else limit


cdef class _Queue:
    cdef public str name
    cdef public int priority
    cdef public int limit
    cdef public cbool paused
    cdef public int occupied
    cdef public int ident
    cdef cset[Entry] runs

    cdef inline cbool full(self):
        return self.limit >= 0 and self.occupied >= self.limit


cdef class PoolState:
    cdef int _limit
    cdef cbool _paused
    cdef int _occupied
    cdef dict _queues          # name -> _Queue
    cdef dict _by_ident        # ident -> _Queue
    cdef list _order           # _Queue by (priority, name)
    cdef int _next_ident
    cdef unordered_map[int64_t, RunRec] _runs
    cdef Py_ssize_t _candidates

    def __init__(self, limit=None, paused=False):
        self._limit = _limit_in(limit, "limit")
        self._paused = bool(paused)
        self._occupied = 0
        self._queues = {}
        self._by_ident = {}
        self._order = []
        self._next_ident = 0
        self._candidates = 0

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

    cdef inline cbool _pool_full(self):
        return self._limit >= 0 and self._occupied >= self._limit

    # ------------------------------------------------------------ queues

    cdef _Queue _queue(self, str name):
        queue = self._queues.get(name)
        if queue is None:
            raise KeyError(f"unknown queue {name!r}")
        return <_Queue>queue

    cdef void _reorder(self):
        self._order = sorted(self._queues.values(), key=lambda q: (q.priority, q.name))

    def add_queue(self, str name, int priority, limit=None, paused=False):
        if name in self._queues:
            raise ValueError(f"queue {name!r} already exists")
        if priority < 1:
            raise ValueError(f"priority must be at least 1, got {priority}")
        cdef _Queue queue = _Queue()
        queue.name = name
        queue.priority = priority
        queue.limit = _limit_in(limit, "limit")
        queue.paused = bool(paused)
        queue.occupied = 0
        queue.ident = self._next_ident
        self._next_ident += 1
        self._queues[name] = queue
        self._by_ident[queue.ident] = queue
        self._reorder()

    def update_queue(self, str name, *, priority=None, limit=UNCHANGED, paused=None):
        cdef _Queue queue = self._queue(name)
        if priority is not None:
            if priority < 1:
                raise ValueError(f"priority must be at least 1, got {priority}")
            queue.priority = priority
        if limit is not UNCHANGED:
            queue.limit = _limit_in(limit, "limit")
        if paused is not None:
            queue.paused = bool(paused)
        self._reorder()

    def remove_queue(self, str name):
        cdef _Queue queue = self._queue(name)
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.begin()
        while it != self._runs.end():
            if deref(it).second.queue == queue.ident:
                if deref(it).second.occupying:
                    self._occupied -= 1
                else:
                    self._candidates -= 1
                it = self._runs.erase(it)
            else:
                inc(it)
        del self._queues[name]
        del self._by_ident[queue.ident]
        self._reorder()

    def queues(self):
        return [(<_Queue>q).name for q in self._order]

    def queue_occupied(self, str name):
        return self._queue(name).occupied

    def queue_length(self, str name):
        return self._queue(name).runs.size()

    # ------------------------------------------------------------ runs

    def __len__(self):
        return self._candidates

    def __contains__(self, key):
        if not isinstance(key, int):
            return False
        return self._runs.count(<int64_t>key) > 0

    def is_occupying(self, int64_t key):
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.find(key)
        if it == self._runs.end():
            raise KeyError(f"unknown run {key}")
        return deref(it).second.occupying

    def add_run(self, int64_t key, str queue, double scheduled):
        if self._runs.count(key):
            raise ValueError(f"run {key} already exists")
        cdef _Queue q = self._queue(queue)
        cdef RunRec rec
        rec.queue = q.ident
        rec.scheduled = scheduled
        rec.occupying = False
        self._runs[key] = rec
        q.runs.insert(Entry(scheduled, key))
        self._candidates += 1

    cdef RunRec* _candidate(self, int64_t key) except NULL:
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.find(key)
        if it == self._runs.end() or deref(it).second.occupying:
            raise KeyError(f"run {key} is not a candidate")
        return &deref(it).second

    cdef void _finish(self, int64_t key, RunRec* rec):
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        q.occupied -= 1
        self._occupied -= 1
        self._runs.erase(key)

    def remove_run(self, int64_t key):
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.find(key)
        if it == self._runs.end():
            raise KeyError(f"unknown run {key}")
        cdef RunRec* rec = &deref(it).second
        cdef _Queue q
        if rec.occupying:
            self._finish(key, rec)
            return
        q = <_Queue>self._by_ident[rec.queue]
        q.runs.erase(Entry(rec.scheduled, key))
        self._candidates -= 1
        self._runs.erase(it)

    def reschedule(self, int64_t key, double scheduled):
        cdef RunRec* rec = self._candidate(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        q.runs.erase(Entry(rec.scheduled, key))
        rec.scheduled = scheduled
        q.runs.insert(Entry(scheduled, key))

    cdef inline void _occupy(self, RunRec* rec, _Queue q):
        rec.occupying = True
        q.occupied += 1
        self._occupied += 1

    def release(self, int64_t key):
        cdef RunRec* rec = self._candidate(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        q.runs.erase(Entry(rec.scheduled, key))
        self._candidates -= 1
        self._occupy(rec, q)

    def occupy(self, int64_t key, str queue):
        if self._runs.count(key):
            raise ValueError(f"run {key} already exists")
        cdef _Queue q = self._queue(queue)
        cdef RunRec rec
        rec.queue = q.ident
        rec.scheduled = 0.0
        rec.occupying = False
        self._runs[key] = rec
        self._occupy(&self._runs[key], q)

    cdef RunRec* _occupying(self, int64_t key) except NULL:
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.find(key)
        if it == self._runs.end() or not deref(it).second.occupying:
            raise KeyError(f"run {key} does not occupy a slot")
        return &deref(it).second

    def finish(self, int64_t key):
        self._finish(key, self._occupying(key))

    def requeue(self, int64_t key, double scheduled):
        cdef RunRec* rec = self._occupying(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        q.occupied -= 1
        self._occupied -= 1
        rec.occupying = False
        rec.scheduled = scheduled
        q.runs.insert(Entry(scheduled, key))
        self._candidates += 1

    # ------------------------------------------------------------ admission

    cdef list _serving(self, object queues):
        if queues is None:
            return self._order
        wanted = set(queues)
        return [q for q in self._order if (<_Queue>q).name in wanted]

    def admit(self, double now, double prefetch_seconds, queues=None, limit=None):
        cdef list taken = []
        cdef long cap = -1 if limit is None else limit
        if self._paused or (limit is not None and cap <= 0):
            return taken
        cdef double horizon = now + prefetch_seconds
        cdef _Queue q
        cdef cset[Entry].iterator head
        cdef int64_t key
        cdef long count = 0
        for obj in self._serving(queues):
            q = <_Queue>obj
            if q.paused:
                continue
            while True:
                if self._pool_full() or (cap >= 0 and count >= cap):
                    return taken
                if q.full() or q.runs.empty():
                    break
                head = q.runs.begin()
                if deref(head).first > horizon:
                    break
                key = deref(head).second
                q.runs.erase(head)
                self._candidates -= 1
                self._occupy(&self._runs[key], q)
                taken.append(key)
                count += 1
        return taken

    def next_due(self, queues=None):
        if self._paused:
            return None
        cdef _Queue q
        cdef double best = 0.0
        cdef cbool found = False
        for obj in self._serving(queues):
            q = <_Queue>obj
            if q.paused or q.runs.empty():
                continue
            if not found or deref(q.runs.begin()).first < best:
                best = deref(q.runs.begin()).first
                found = True
        return best if found else None

    def explain(self, int64_t key, double now, double prefetch_seconds):
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.find(key)
        if it == self._runs.end():
            raise KeyError(f"unknown run {key}")
        cdef RunRec rec = deref(it).second
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        if rec.occupying:
            return Explanation(key, q.name, "occupying", 0, 0, "released", "the run was released and holds a slot")
        cdef double horizon = now + prefetch_seconds
        cdef Entry mine = Entry(rec.scheduled, key)
        cdef long queue_position = 0, due_ahead = 0, pool_position = 0
        cdef cset[Entry].iterator walk = q.runs.begin()
        while walk != q.runs.end() and deref(walk) < mine:
            queue_position += 1
            if deref(walk).first <= horizon:
                due_ahead += 1
            inc(walk)
        cdef _Queue other
        for obj in self._order:
            other = <_Queue>obj
            if other.paused:
                continue
            if other is q:
                pool_position += due_ahead
                break
            walk = other.runs.begin()
            while walk != other.runs.end() and deref(walk).first <= horizon:
                pool_position += 1
                inc(walk)
        name = q.name
        if self._paused:
            blocker, message = "pool_paused", "the work pool is paused"
        elif q.paused:
            blocker, message = "queue_paused", f"queue {name!r} is paused"
        elif rec.scheduled > horizon:
            blocker, message = "not_due", f"scheduled {rec.scheduled - now:.0f}s from now, beyond the {prefetch_seconds:g}s prefetch"
        elif q.full():
            blocker, message = "queue_limit", f"waiting for queue {name!r} limit ({q.occupied}/{q.limit} occupied)"
        elif self._pool_full():
            blocker, message = "pool_limit", f"waiting for the work pool limit ({self._occupied}/{self._limit} occupied)"
        elif q.limit >= 0 and due_ahead >= q.limit - q.occupied:
            blocker = "runs_ahead"
            message = f"{due_ahead} due runs ahead of it in queue {name!r} take its {q.limit - q.occupied} free slots"
        elif self._limit >= 0 and pool_position >= self._limit - self._occupied:
            blocker = "runs_ahead"
            message = f"{pool_position} due runs ahead of it in the waterfall take the pool's {self._limit - self._occupied} free slots"
        else:
            blocker, message = "none", "the next admission releases it"
        return Explanation(key, name, "candidate", queue_position, pool_position, blocker, message)

    # ------------------------------------------------------------ snapshots

    def snapshot(self):
        cdef list candidates = [], occupying = []
        cdef unordered_map[int64_t, RunRec].iterator it = self._runs.begin()
        while it != self._runs.end():
            name = (<_Queue>self._by_ident[deref(it).second.queue]).name
            if deref(it).second.occupying:
                occupying.append((deref(it).first, name, 0.0, True))
            else:
                candidates.append((deref(it).first, name, deref(it).second.scheduled, False))
            inc(it)
        candidates.sort()
        occupying.sort()
        return Snapshot(
            limit=_limit_out(self._limit),
            paused=self._paused,
            queues=[((<_Queue>q).name, (<_Queue>q).priority, _limit_out((<_Queue>q).limit), (<_Queue>q).paused) for q in self._order],
            runs=candidates + occupying,
        )

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
