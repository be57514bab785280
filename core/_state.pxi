# Included by _admission.pyx: the pool's queues and runs, and every change to them that is
# not an admission.
#
# Invariants (tests/unit/test_admission_twin.py holds them to the reference):
# - A run is in the table either as a CANDIDATE of one live queue, with its scheduled time,
#   or OCCUPYING a slot of one. _candidates and each queue's length count the candidates;
#   _occupied and each queue's occupied count the others.
# - Each candidate has one live entry in its queue's runs: an entry whose key's cell says
#   "candidate of this queue at this time". Removing or rescheduling a candidate leaves its
#   old entry behind, stale; stale entries are dropped when they reach the front, and a
#   queue's entries are compacted when they outnumber twice its candidates (plus 64).
# - _walk holds the live queues by (priority, name) (sb_rules.hpp), _rank is its inverse,
#   and a queue's bit in _ready is set while sb_queue_ready(length, paused) holds.
# - A refused call (an unknown name, a run in the wrong state, a value out of bounds)
#   raises before it changes anything.

from operator import itemgetter

from shiftboss.core._types import check_limit, check_priority, time_refused

_by_priority = itemgetter(0)
_by_name = itemgetter(1)

# ------------------------------------------------------------------ values in and out

cdef inline int64_t _limit_in(object limit, str field) except -2:
    check_limit(field, limit)
    return SB_NO_LIMIT if limit is None else <int64_t>limit


cdef inline object _limit_out(int64_t limit):
    return None if limit < 0 else limit


cdef inline int _check_time(double scheduled) except -1:
    if scheduled != scheduled:
        raise time_refused("scheduled", scheduled)
    return 0


cdef inline Entry _entry(double scheduled, int64_t key) noexcept nogil:
    cdef Entry entry
    entry.when = sb_time_code(scheduled)
    entry.seq = <uint64_t>key ^ SB_SIGN
    return entry


cdef inline int64_t _key_of(const Entry& entry) noexcept nogil:
    return <int64_t>(entry.seq ^ SB_SIGN)

# ------------------------------------------------------------------ queues

cdef int _ident(PoolState self, str name) except -1:
    ident = self._idents.get(name)
    if ident is None:
        raise KeyError(f"unknown queue {name!r}")
    return <int>ident


cdef int _reorder(PoolState self) except -1:
    """Rebuild the waterfall: live queues by (priority, name)."""
    order = [(self._queues[<int>ident].priority, name, ident) for name, ident in self._idents.items()]
    if sb_ties_reversed:
        order.sort(key=_by_name, reverse=True)  # kept among equal priorities by the stable sort below
        order.sort(key=_by_priority)
    else:
        order.sort()
    self._walk.clear()
    self._rank.assign(self._queues.size(), -1)
    self._ready.assign((len(order) + 63) // 64, 0)
    for _, _, ident in order:
        self._rank[ident] = self._walk.size()
        self._walk.push_back(ident)
        _note(self, ident)
    return 0


cdef inline void _note(PoolState self, int ident) noexcept:
    """Set the queue's bit in _ready from its state: admission walks only the set bits."""
    if self._rank[ident] < 0:
        return  # removed
    cdef size_t pos = self._rank[ident]
    cdef uint64_t bit = (<uint64_t>1) << (pos & 63)
    cdef Queue* q = &self._queues[ident]
    if sb_queue_ready(q.length, q.paused):
        self._ready[pos >> 6] |= bit
    else:
        self._ready[pos >> 6] &= ~bit


cdef int _add_queue(PoolState self, str name, object priority, object limit, object paused) except -1:
    if name in self._idents:
        raise ValueError(f"queue {name!r} already exists")
    check_priority(priority)
    cdef Queue queue
    queue.length = 0
    queue.limit = _limit_in(limit, "limit")
    queue.occupied = 0
    queue.priority = <int64_t>priority
    queue.paused = bool(paused)
    queue.alive = True
    cdef int ident = <int>self._queues.size()
    self._queues.push_back(queue)
    self._mark.push_back(0)
    self._names.append(name)
    self._idents[name] = ident
    return _reorder(self)


cdef int _update_queue(PoolState self, str name, object priority, object limit, object paused) except -1:
    cdef Queue* queue = &self._queues[_ident(self, name)]
    # Every value is checked before any is applied: a refused update changes nothing.
    if priority is not None:
        check_priority(priority)
    cdef int64_t new_limit = queue.limit if limit is UNCHANGED else _limit_in(limit, "limit")
    if priority is not None:
        queue.priority = <int64_t>priority
    queue.limit = new_limit
    if paused is not None:
        queue.paused = bool(paused)
    return _reorder(self)


cdef int _rename_queue(PoolState self, str name, str new_name) except -1:
    """Runs refer to their queue by ident, so only the names change (and the order of
    queues of equal priority, which ties on the name)."""
    cdef int ident = _ident(self, name)
    if new_name in self._idents:
        raise ValueError(f"queue {new_name!r} already exists")
    del self._idents[name]
    self._idents[new_name] = ident
    self._names[ident] = new_name
    return _reorder(self)


cdef int _remove_queue(PoolState self, str name) except -1:
    cdef int ident = _ident(self, name)
    cdef vector[int64_t] gone
    cdef size_t i
    cdef Cell* c
    for i in range(self._table.mask + 1):
        c = &self._table.cells[i]
        if c.state != FREE and c.queue == ident:
            gone.push_back(c.key)
    for key in gone:
        c = _find(&self._table, key)
        if c.state == OCCUPYING:
            self._occupied -= 1
        else:
            self._candidates -= 1
        _erase(&self._table, c)
    cdef Queue* queue = &self._queues[ident]
    queue.runs.clear()
    queue.alive = False
    queue.length = queue.occupied = 0
    del self._idents[name]
    return _reorder(self)

# ------------------------------------------------------------------ runs

cdef Cell* _vacant(PoolState self, int64_t key) except NULL:
    """The empty cell where a new run `key` goes; ValueError if the run exists."""
    _reserve_one(&self._table)
    cdef Cell* c = _probe(&self._table, key)
    if c.state != FREE:
        raise ValueError(f"run {key} already exists")
    return c


cdef inline void _claim(PoolState self, Cell* c, int64_t key, int ident) noexcept:
    c.key = key
    c.queue = ident
    self._table.count += 1


cdef Cell* _candidate(PoolState self, int64_t key) except NULL:
    cdef Cell* c = _find(&self._table, key)
    if c == NULL or c.state != CANDIDATE:
        raise KeyError(f"run {key} is not a candidate")
    return c


cdef Cell* _occupying(PoolState self, int64_t key) except NULL:
    cdef Cell* c = _find(&self._table, key)
    if c == NULL or c.state != OCCUPYING:
        raise KeyError(f"run {key} does not occupy a slot")
    return c


cdef int _enqueue(PoolState self, Cell* c, Queue* q, double scheduled) except -1:
    """The run in cell `c` becomes a candidate of `q`, due at `scheduled`."""
    c.state = CANDIDATE
    c.scheduled = scheduled
    q.length += 1
    self._candidates += 1
    if q.length == 1:
        _note(self, c.queue)
    return _push(self, q, c.key, scheduled)


cdef int _push(PoolState self, Queue* q, int64_t key, double scheduled) except -1:
    q.runs.push(_entry(scheduled, key))
    if q.runs.size > <size_t>(2 * q.length + 64):
        _compact(self, q)
    return 0


cdef int _compact(PoolState self, Queue* q) except -1:
    """Drop the stale entries, and the copies of a live one (a run rescheduled away and back)."""
    cdef vector[Entry] entries, live
    cdef Entry entry
    cdef int ident = q - &self._queues[0]
    q.runs.copy_to(entries)
    for entry in entries:
        if _live(self, entry, ident) != NULL and (live.empty() or sb_before(live.back(), entry)):
            live.push_back(entry)
    q.runs.assign(live)
    return 0


cdef inline Cell* _live(PoolState self, const Entry& entry, int ident) noexcept:
    """The entry's cell if the entry is live, else NULL."""
    cdef Cell* c = _find(&self._table, _key_of(entry))
    if c != NULL and c.state == CANDIDATE and c.queue == ident and sb_time_code(c.scheduled) == entry.when:
        return c
    return NULL


cdef inline void _vacate(PoolState self, Cell* c) noexcept:
    self._queues[c.queue].occupied -= 1
    self._occupied -= 1


cdef inline void _occupy_cell(PoolState self, Cell* c) noexcept:
    c.state = OCCUPYING
    self._queues[c.queue].occupied += 1
    self._occupied += 1


cdef inline void _unqueue(PoolState self, Cell* c) noexcept:
    """A candidate leaves its queue: its entry goes stale."""
    self._queues[c.queue].length -= 1
    self._candidates -= 1
    if self._queues[c.queue].length == 0:
        _note(self, c.queue)


cdef int _add_run(PoolState self, int64_t key, str queue, double scheduled) except -1:
    cdef Cell* c = _vacant(self, key)
    cdef int ident = _ident(self, queue)
    _check_time(scheduled)
    _claim(self, c, key, ident)
    _enqueue(self, c, &self._queues[ident], scheduled)
    # Keys are creation sequences, so the next run added is likely key + 1.
    _prefetch_run(&self._table, <int64_t>(<uint64_t>key + 1))
    return 0


cdef int _occupy(PoolState self, int64_t key, str queue) except -1:
    cdef Cell* c = _vacant(self, key)
    cdef int ident = _ident(self, queue)
    _claim(self, c, key, ident)
    c.scheduled = 0.0
    _occupy_cell(self, c)
    return 0


cdef int _remove_run(PoolState self, int64_t key) except -1:
    cdef Cell* c = _find(&self._table, key)
    if c == NULL:
        raise KeyError(f"unknown run {key}")
    if c.state == OCCUPYING:
        _vacate(self, c)
    else:
        _unqueue(self, c)
    _erase(&self._table, c)
    return 0


cdef int _reschedule(PoolState self, int64_t key, double scheduled) except -1:
    cdef Cell* c = _candidate(self, key)
    _check_time(scheduled)
    cdef bint moved = sb_time_code(c.scheduled) != sb_time_code(scheduled)
    c.scheduled = scheduled
    if moved:  # else its live entry is already in place
        _push(self, &self._queues[c.queue], key, scheduled)
    return 0


cdef int _release(PoolState self, int64_t key) except -1:
    cdef Cell* c = _candidate(self, key)
    _unqueue(self, c)
    _occupy_cell(self, c)
    return 0


cdef int _finish(PoolState self, int64_t key) except -1:
    cdef Cell* c = _occupying(self, key)
    _vacate(self, c)
    _erase(&self._table, c)
    return 0


cdef int _requeue(PoolState self, int64_t key, double scheduled) except -1:
    cdef Cell* c = _occupying(self, key)
    _check_time(scheduled)
    _vacate(self, c)
    _enqueue(self, c, &self._queues[c.queue], scheduled)
    return 0
