# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""The compiled scheduling core: the same admission as `_reference`, on flat C++ storage.

Every run has a record in one vector (a slot), found by key through one hash map. Each
queue keeps its candidates in a binary min-heap of (scheduled, key, slot, version)
entries; removing or rescheduling a candidate bumps its record's version, which makes the
old heap entry stale, to be dropped when it reaches the top (or when the heap is
compacted). Admission therefore touches only a heap and a record: no hashing, no tree
rebalancing. Limits are ints with -1 for "none".
"""

from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint8_t
from libcpp cimport bool as cbool
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector
from cython.operator cimport dereference as deref, preincrement as inc

from shiftboss.core._types import UNCHANGED, Explanation, Snapshot

cdef extern from *:
    """
    #define SB_PREFETCH(p) __builtin_prefetch((const void*)(p), 1, 1)
    """
    void SB_PREFETCH(void* p) nogil

cdef enum:
    FREE = 0
    CANDIDATE = 1
    OCCUPYING = 2

cdef struct Entry:
    double scheduled
    int64_t key
    uint32_t slot
    uint32_t version

cdef struct Rec:
    int64_t key
    double scheduled
    int queue
    uint32_t version
    uint8_t state


cdef inline bint _before(const Entry& a, const Entry& b) nogil:
    return a.scheduled < b.scheduled or (a.scheduled == b.scheduled and a.key < b.key)


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
    cdef public bint paused
    cdef public int occupied
    cdef public int ident
    cdef public Py_ssize_t length
    cdef vector[Entry] heap

    cdef inline bint full(self):
        return self.limit >= 0 and self.occupied >= self.limit

    cdef void push(self, Entry entry):
        self.heap.push_back(entry)
        cdef size_t i = self.heap.size() - 1, parent
        while i > 0:
            parent = (i - 1) >> 1
            if not _before(entry, self.heap[parent]):
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = entry

    cdef void pop(self):
        cdef size_t n = self.heap.size() - 1, i = 0, child
        cdef Entry last = self.heap[n]
        self.heap.pop_back()
        if n == 0:
            return
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and _before(self.heap[child + 1], self.heap[child]):
                child += 1
            if not _before(self.heap[child], last):
                break
            self.heap[i] = self.heap[child]
            i = child
        self.heap[i] = last


cdef class PoolState:
    cdef int _limit
    cdef bint _paused
    cdef int _occupied
    cdef dict _queues          # name -> _Queue
    cdef list _by_ident        # ident -> _Queue (None once removed)
    cdef list _order           # _Queue by (priority, name)
    cdef vector[PyObject*] _walk  # the same, borrowed from _order: the admission loop's view
    cdef vector[Rec] _recs
    cdef vector[uint32_t] _free
    cdef unordered_map[int64_t, uint32_t] _slots
    cdef Py_ssize_t _candidates

    def __init__(self, limit=None, paused=False):
        self._limit = _limit_in(limit, "limit")
        self._paused = bool(paused)
        self._occupied = 0
        self._queues = {}
        self._by_ident = []
        self._order = []
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

    cdef inline bint _pool_full(self):
        return self._limit >= 0 and self._occupied >= self._limit

    # ------------------------------------------------------------ queues

    cdef _Queue _queue(self, str name):
        queue = self._queues.get(name)
        if queue is None:
            raise KeyError(f"unknown queue {name!r}")
        return <_Queue>queue

    cdef void _reorder(self):
        self._order = sorted(self._queues.values(), key=lambda q: (q.priority, q.name))
        self._walk.clear()
        for queue in self._order:
            self._walk.push_back(<PyObject*>queue)

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
        queue.length = 0
        queue.ident = len(self._by_ident)
        self._by_ident.append(queue)
        self._queues[name] = queue
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
        cdef uint32_t slot
        for slot in range(self._recs.size()):
            if self._recs[slot].state != FREE and self._recs[slot].queue == queue.ident:
                if self._recs[slot].state == OCCUPYING:
                    self._occupied -= 1
                else:
                    self._candidates -= 1
                self._release_slot(slot)
        del self._queues[name]
        self._by_ident[queue.ident] = None
        self._reorder()

    def queues(self):
        return [(<_Queue>q).name for q in self._order]

    def queue_occupied(self, str name):
        return self._queue(name).occupied

    def queue_length(self, str name):
        return self._queue(name).length

    # ------------------------------------------------------------ records

    cdef uint32_t _take_slot(self, int64_t key):
        cdef uint32_t slot
        if self._free.empty():
            slot = <uint32_t>self._recs.size()
            self._recs.push_back(Rec(key=0, scheduled=0.0, queue=0, version=0, state=FREE))
        else:
            slot = self._free.back()
            self._free.pop_back()
        self._recs[slot].key = key
        self._slots[key] = slot
        return slot

    cdef void _release_slot(self, uint32_t slot):
        self._slots.erase(self._recs[slot].key)
        self._recs[slot].state = FREE
        self._recs[slot].version += 1
        self._free.push_back(slot)

    cdef Rec* _find(self, int64_t key):
        cdef unordered_map[int64_t, uint32_t].iterator it = self._slots.find(key)
        if it == self._slots.end():
            return NULL
        return &self._recs[deref(it).second]

    cdef void _enqueue(self, uint32_t slot, _Queue q, double scheduled):
        cdef Rec* rec = &self._recs[slot]
        rec.scheduled = scheduled
        rec.queue = q.ident
        rec.state = CANDIDATE
        rec.version += 1
        q.push(Entry(scheduled=scheduled, key=rec.key, slot=slot, version=rec.version))
        q.length += 1
        self._candidates += 1
        if q.heap.size() > <size_t>(4 * q.length + 64):
            self._compact(q)

    cdef void _compact(self, _Queue q):
        """Drop stale entries when they outnumber the live ones (many reschedules)."""
        cdef vector[Entry] live
        cdef Entry entry
        for entry in q.heap:
            if self._live(entry):
                live.push_back(entry)
        q.heap.clear()
        for entry in live:
            q.push(entry)

    cdef inline bint _live(self, const Entry& entry):
        cdef Rec* rec = &self._recs[entry.slot]
        return rec.version == entry.version and rec.state == CANDIDATE

    cdef void _unqueue(self, Rec* rec):
        """A candidate leaves its queue: its heap entry goes stale."""
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        rec.version += 1
        q.length -= 1
        self._candidates -= 1

    cdef inline void _occupy_rec(self, Rec* rec, _Queue q):
        rec.state = OCCUPYING
        q.occupied += 1
        self._occupied += 1

    # ------------------------------------------------------------ runs

    def __len__(self):
        return self._candidates

    def __contains__(self, key):
        if not isinstance(key, int):
            return False
        return self._slots.count(<int64_t>key) > 0

    def is_occupying(self, int64_t key):
        cdef Rec* rec = self._find(key)
        if rec == NULL:
            raise KeyError(f"unknown run {key}")
        return rec.state == OCCUPYING

    def add_run(self, int64_t key, str queue, double scheduled):
        if self._slots.count(key):
            raise ValueError(f"run {key} already exists")
        cdef _Queue q = self._queue(queue)
        self._enqueue(self._take_slot(key), q, scheduled)

    cdef Rec* _candidate(self, int64_t key) except NULL:
        cdef Rec* rec = self._find(key)
        if rec == NULL or rec.state != CANDIDATE:
            raise KeyError(f"run {key} is not a candidate")
        return rec

    cdef Rec* _occupying(self, int64_t key) except NULL:
        cdef Rec* rec = self._find(key)
        if rec == NULL or rec.state != OCCUPYING:
            raise KeyError(f"run {key} does not occupy a slot")
        return rec

    cdef void _vacate(self, Rec* rec):
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        q.occupied -= 1
        self._occupied -= 1

    def remove_run(self, int64_t key):
        cdef Rec* rec = self._find(key)
        if rec == NULL:
            raise KeyError(f"unknown run {key}")
        if rec.state == OCCUPYING:
            self._vacate(rec)
        else:
            self._unqueue(rec)
        self._release_slot(self._slots[key])

    def reschedule(self, int64_t key, double scheduled):
        cdef Rec* rec = self._candidate(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        cdef uint32_t slot = self._slots[key]
        self._unqueue(rec)
        self._enqueue(slot, q, scheduled)

    def release(self, int64_t key):
        cdef Rec* rec = self._candidate(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        self._unqueue(rec)
        self._occupy_rec(rec, q)

    def occupy(self, int64_t key, str queue):
        if self._slots.count(key):
            raise ValueError(f"run {key} already exists")
        cdef _Queue q = self._queue(queue)
        cdef uint32_t slot = self._take_slot(key)
        cdef Rec* rec = &self._recs[slot]
        rec.queue = q.ident
        rec.scheduled = 0.0
        rec.version += 1
        self._occupy_rec(rec, q)

    def finish(self, int64_t key):
        cdef Rec* rec = self._occupying(key)
        self._vacate(rec)
        self._release_slot(self._slots[key])

    def requeue(self, int64_t key, double scheduled):
        cdef Rec* rec = self._occupying(key)
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        self._vacate(rec)
        self._enqueue(self._slots[key], q, scheduled)

    # ------------------------------------------------------------ admission

    cdef list _serving(self, object queues):
        if queues is None:
            return self._order
        wanted = set(queues)
        return [q for q in self._order if (<_Queue>q).name in wanted]

    cdef bint _head(self, _Queue q, Entry* out):
        """The queue's earliest live candidate, dropping stale entries on the way."""
        while not q.heap.empty():
            if self._live(q.heap[0]):
                out[0] = q.heap[0]
                return True
            q.pop()
        return False

    def admit(self, double now, double prefetch_seconds, queues=None, limit=None):
        cdef list taken = []
        cdef long cap = -1 if limit is None else limit
        if self._paused or (limit is not None and cap <= 0):
            return taken
        cdef double horizon = now + prefetch_seconds
        cdef _Queue q
        cdef Entry head
        cdef Rec* rec
        cdef long count = 0
        cdef PyObject* ptr
        cdef set wanted = None if queues is None else set(queues)
        for ptr in self._walk:
            q = <_Queue>ptr
            if q.paused or q.length == 0 or (wanted is not None and q.name not in wanted):
                continue
            while True:
                if self._pool_full() or (cap >= 0 and count >= cap):
                    return taken
                if q.full() or not self._head(q, &head) or head.scheduled > horizon:
                    break
                q.pop()
                if not q.heap.empty():
                    # The next head's record is a likely cache miss: start fetching it now.
                    SB_PREFETCH(&self._recs[q.heap[0].slot])
                rec = &self._recs[head.slot]
                rec.version += 1
                q.length -= 1
                self._candidates -= 1
                self._occupy_rec(rec, q)
                taken.append(head.key)
                count += 1
        return taken

    def next_due(self, queues=None):
        if self._paused:
            return None
        cdef _Queue q
        cdef Entry head
        cdef double best = 0.0
        cdef bint found = False
        for obj in self._serving(queues):
            q = <_Queue>obj
            if q.paused or not self._head(q, &head):
                continue
            if not found or head.scheduled < best:
                best = head.scheduled
                found = True
        return best if found else None

    def explain(self, int64_t key, double now, double prefetch_seconds):
        cdef Rec* found = self._find(key)
        if found == NULL:
            raise KeyError(f"unknown run {key}")
        cdef Rec rec = found[0]
        cdef _Queue q = <_Queue>self._by_ident[rec.queue]
        if rec.state == OCCUPYING:
            return Explanation(key, q.name, "occupying", 0, 0, "released", "the run was released and holds a slot")
        cdef double horizon = now + prefetch_seconds
        cdef Entry mine = Entry(scheduled=rec.scheduled, key=key, slot=0, version=0)
        cdef long queue_position = 0, due_ahead = 0, pool_position = 0
        cdef Entry entry
        for entry in q.heap:
            if self._live(entry) and _before(entry, mine):
                queue_position += 1
                if entry.scheduled <= horizon:
                    due_ahead += 1
        cdef _Queue other
        for obj in self._order:
            other = <_Queue>obj
            if other.paused:
                continue
            if other is q:
                pool_position += due_ahead
                break
            for entry in other.heap:
                if self._live(entry) and entry.scheduled <= horizon:
                    pool_position += 1
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
        cdef Rec rec
        for rec in self._recs:
            if rec.state == FREE:
                continue
            name = (<_Queue>self._by_ident[rec.queue]).name
            if rec.state == OCCUPYING:
                occupying.append((rec.key, name, 0.0, True))
            else:
                candidates.append((rec.key, name, rec.scheduled, False))
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
