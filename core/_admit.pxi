# Included by _admission.pyx: admission, the priority waterfall.
#
# admit walks the queues in _walk order, visiting only those whose _ready bit is set, and
# drains each (earliest scheduled start first, then lowest key) until it is empty, its
# next run is not due, or its limit is reached; it stops at once when the pool's limit or
# the worker's is reached. Invariants: no limit is pushed past (sb_rules.hpp); no run is
# released twice; a queue is passed over only when nothing more of it may go.
#
# Admission takes entries without consulting the table whenever a queue holds no stale
# entry (one entry per candidate), and marks the released runs' cells after the walk, so
# the cache misses on those cells overlap instead of queueing one behind the other.

from cpython.object cimport PyObject

from shiftboss.core._types import MAX_LIMIT

cdef extern from "Python.h":
    object PyList_New(Py_ssize_t size)
    void PyList_SET_ITEM(object lst, Py_ssize_t i, PyObject* item)  # steals item
    PyObject* PyLong_FromLongLong(long long value)  # a new reference, NULL on failure


cdef double _horizon(double now, double prefetch_seconds) except? -1.0:
    """The latest scheduled start released now; refused when it is no number (inf - inf)."""
    cdef double horizon = now + prefetch_seconds
    if horizon != horizon:
        raise time_refused("now + prefetch_seconds", f"{now} + {prefetch_seconds}")
    return horizon


cdef bint _serve_only(PoolState self, object queues) except -1:
    """Mark the queues a worker serves (unknown names are ignored); False when it serves all."""
    if queues is None:
        return False
    self._epoch += 1
    for name in queues:
        ident = self._idents.get(name)
        if ident is not None:
            self._mark[<int>ident] = self._epoch
    return True


cdef inline Cell* _head(PoolState self, Queue* q, int ident) noexcept:
    """The cell of the queue's earliest live candidate, dropping stale entries on the way."""
    cdef Cell* c
    while q.runs.size:
        c = _live(self, q.runs.front(), ident)
        if c != NULL:
            return c
        q.runs.pop_front()
    return NULL


cdef list _admit(PoolState self, double now, double prefetch_seconds, object queues, object limit):
    cdef int64_t cap = -1
    if limit is not None:
        try:
            cap = limit
        except OverflowError:
            if limit > MAX_LIMIT:
                check_limit("limit", limit)  # refused, naming the bound
            cap = 0  # below -2**63: admits nothing, as any limit <= 0
        if cap < 0:
            cap = 0
    cdef double horizon = _horizon(now, prefetch_seconds)
    if self._paused or cap == 0:
        return []
    cdef bint only = _serve_only(self, queues)
    cdef Queue* q = NULL
    cdef int ident
    cdef size_t pos, word
    cdef uint64_t bits
    cdef int64_t count = 0
    cdef bint done = False
    self._taken.clear()
    for word in range(self._ready.size()):
        bits = self._ready[word]
        while bits and not done:
            pos = (word << 6) + __builtin_ctzll(bits)
            bits &= bits - 1
            ident = self._walk[pos]
            if not only or self._mark[ident] == self._epoch:
                q = &self._queues[ident]
                done = _admit_from(self, q, ident, horizon, cap, &count)
                if q.length == 0:
                    _note(self, ident)
        if done:
            break
    if q != NULL:
        # The next admission likely starts here, with the top and then one of its
        # children: fetch their cells ahead of it.
        for pos in range(5):
            if q.runs.peek(pos) == NULL:
                break
            _prefetch_run(&self._table, _key_of(q.runs.peek(pos)[0]))
    # The ints first: while they are made, the prefetched cells arrive.
    cdef PyObject* item
    cdef bint failed = False
    taken = PyList_New(count)
    for pos in range(<size_t>count):
        item = PyLong_FromLongLong(self._taken[pos])
        if item == NULL:
            failed = True
            break
        PyList_SET_ITEM(taken, pos, item)
    for pos in range(<size_t>count):
        _find(&self._table, self._taken[pos]).state = OCCUPYING
    if failed:
        raise MemoryError()
    return taken


cdef inline bint _admit_from(PoolState self, Queue* q, int ident, double horizon, int64_t cap, int64_t* count) noexcept:
    """Release the queue's due runs into _taken; True once the pool or the worker is full."""
    cdef Cell* c
    cdef Entry head
    while True:
        if sb_pool_full(self._occupied, self._limit) or (cap >= 0 and count[0] >= cap):
            return True
        if sb_queue_full(q.occupied, q.limit) or q.length == 0:
            return False
        if q.runs.size == <size_t>q.length:
            # One entry per candidate and none stale: the top is live without asking
            # the table. Its cell is marked after the walk, once fetched.
            head = q.runs.front()
            if sb_time_of(head.when) > horizon:
                return False
            _prefetch_run(&self._table, _key_of(head))
        else:
            c = _head(self, q, ident)
            if c == NULL or c.scheduled > horizon:
                return False
            head = q.runs.front()
            c.state = OCCUPYING  # before a duplicate entry of it can surface
        q.runs.pop_front()
        q.length -= 1
        q.occupied += 1
        self._candidates -= 1
        self._occupied += 1
        self._taken.push_back(_key_of(head))
        count[0] += 1


cdef list _peek(PoolState self, double now, double prefetch_seconds, object queues, object limit):
    """What _admit would release now, in its order, changing nothing: each queue's entries are
    walked in place (stale ones skipped) with the pool's and queues' counts kept aside, so a
    look costs the runs it returns (and the stale entries on the way), not the pool's size."""
    cdef int64_t cap = -1
    if limit is not None:
        try:
            cap = limit
        except OverflowError:
            if limit > MAX_LIMIT:
                check_limit("limit", limit)
            cap = 0
        if cap < 0:
            cap = 0
    cdef double horizon = _horizon(now, prefetch_seconds)
    if self._paused or cap == 0:
        return []
    cdef bint only = _serve_only(self, queues)
    cdef int64_t occupied = self._occupied
    cdef int64_t from_queue
    cdef int64_t count = 0
    cdef Queue* q
    cdef Cell* c
    cdef const Entry* entry
    cdef Cursor at
    cdef int ident
    cdef bint stale
    taken = []
    for ident in self._walk:
        q = &self._queues[ident]
        if q.paused or q.length == 0 or (only and self._mark[ident] != self._epoch):
            continue
        from_queue = 0
        stale = q.runs.size != <size_t>q.length
        at.block = 0
        at.pos = 0
        at.started = 0
        while True:
            if sb_pool_full(occupied, self._limit) or (cap >= 0 and count >= cap):
                return taken
            if sb_queue_full(q.occupied + from_queue, q.limit):
                break
            entry = q.runs.next(at)
            if entry == NULL:
                break
            if stale:
                c = _live(self, entry[0], ident)
                if c == NULL or _key_of(entry[0]) in taken:
                    continue
            if sb_time_of(entry.when) > horizon:
                break
            taken.append(_key_of(entry[0]))
            from_queue += 1
            occupied += 1
            count += 1
    return taken


cdef object _next_due(PoolState self, object queues):
    if self._paused:
        return None
    cdef bint only = _serve_only(self, queues)
    cdef Queue* q
    cdef Cell* c
    cdef double best = 0.0
    cdef bint found = False
    cdef int ident
    for ident in self._walk:
        q = &self._queues[ident]
        if q.paused or (only and self._mark[ident] != self._epoch):
            continue
        c = _head(self, q, ident)
        if c != NULL and (not found or c.scheduled < best):
            best = c.scheduled
            found = True
    return best if found else None
