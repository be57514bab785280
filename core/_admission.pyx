# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, binding=False
# distutils: language = c++
"""The compiled scheduling core: the same admission as `_reference`, on flat C++ storage.

Runs live in one open-addressing hash table (linear probing, 32-byte cells) keyed by the
run's key: a lookup is one probe into one cache line, with no separate record to chase.
Each queue keeps its candidates in a 4-ary min-heap of 16-byte (scheduled, key) entries,
laid out so that the four children of a node share one cache line: a pop from a heap of
100,000 entries touches about nine lines. As in the reference, removing or rescheduling a
candidate leaves its old heap entry behind; an entry is live while the run's cell still
says "candidate of this queue at this time", stale entries are dropped when they reach the
top, and a heap is compacted when they outnumber the live ones.

Admission pops heads without consulting the table whenever a queue holds no stale entry
(one entry per candidate), and marks the released runs' cells after the walk, so the cache
misses on those cells overlap instead of queueing one behind the other. Limits are ints
with -1 for "none".
"""

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from libcpp.algorithm cimport sort
from libcpp.vector cimport vector

from shiftboss.core._types import UNCHANGED, Explanation, Snapshot

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    #define SB_PREFETCH(p) __builtin_prefetch((const void*)(p), 1, 3)
    #define SB_GOLDEN 0x9E3779B97F4A7C15ULL
    #define SB_SIGN 0x8000000000000000ULL
    /* A time as an unsigned int in the same order (-0.0 counts as 0.0), and back: heap
       comparisons on ints are shorter than on doubles, and a pop is a chain of them. */
    static inline uint64_t sb_time_code(double t) {
        uint64_t bits;
        t += 0.0;
        memcpy(&bits, &t, 8);
        return (bits >> 63) ? ~bits : (bits | 0x8000000000000000ULL);
    }
    static inline double sb_time_of(uint64_t code) {
        uint64_t bits = (code >> 63) ? (code & 0x7FFFFFFFFFFFFFFFULL) : ~code;
        double t;
        memcpy(&t, &bits, 8);
        return t;
    }
    static inline void* sb_aligned_alloc(size_t alignment, size_t size) {
        void* p = NULL;
        if (posix_memalign(&p, alignment, size) != 0) return NULL;
        return p;
    }
    /* Large tables ask for transparent huge pages: random probes then miss the TLB far less. */
    static inline void sb_advise_huge(void* p, size_t size) {
    #ifdef MADV_HUGEPAGE
        madvise(p, size, MADV_HUGEPAGE);
    #endif
    }
    """
    void SB_PREFETCH(const void* p) noexcept nogil
    uint64_t SB_GOLDEN
    uint64_t SB_SIGN
    uint64_t sb_time_code(double t) noexcept nogil
    double sb_time_of(uint64_t code) noexcept nogil
    void* sb_aligned_alloc(size_t alignment, size_t size) noexcept nogil
    void sb_advise_huge(void* p, size_t size) noexcept nogil
    int __builtin_ctzll(unsigned long long x) noexcept nogil

cdef extern from "Python.h":
    object PyList_New(Py_ssize_t size)
    void PyList_SET_ITEM(object lst, Py_ssize_t i, PyObject* item)  # steals item
    PyObject* PyLong_FromLongLong(long long value)  # a new reference, NULL on failure

cdef enum:
    FREE = 0
    CANDIDATE = 1
    OCCUPYING = 2

# ------------------------------------------------------------------ the run table

cdef struct Cell:
    int64_t key
    double scheduled      # candidates only
    int32_t queue         # the queue's ident
    uint8_t state         # FREE marks an empty cell
    uint8_t[11] spare     # pads the cell to 32 bytes: two to a cache line, none across two

cdef struct Table:
    Cell* cells
    size_t mask           # capacity - 1; the capacity is a power of two
    size_t count
    int shift             # 64 - log2(capacity)

cdef enum:
    MIN_CAPACITY = 16
    HUGE = 2 * 1024 * 1024   # tables this large get huge pages


cdef inline size_t _home(const Table* t, int64_t key) noexcept nogil:
    return <size_t>((<uint64_t>key * SB_GOLDEN) >> t.shift)


cdef inline Cell* _probe(const Table* t, int64_t key) noexcept nogil:
    """The cell holding `key`, or the empty cell where it would go."""
    cdef size_t i = _home(t, key)
    cdef Cell* c
    while True:
        c = &t.cells[i]
        if c.state == FREE or c.key == key:
            return c
        i = (i + 1) & t.mask


cdef inline Cell* _find(const Table* t, int64_t key) noexcept nogil:
    cdef Cell* c = _probe(t, key)
    if c.state == FREE:
        return NULL
    return c


cdef Cell* _alloc_cells(size_t capacity) noexcept nogil:
    cdef size_t size = capacity * sizeof(Cell)
    cdef Cell* cells
    if size < HUGE:
        return <Cell*>calloc(capacity, sizeof(Cell))
    cells = <Cell*>sb_aligned_alloc(HUGE, size)
    if cells != NULL:
        sb_advise_huge(cells, size)
        memset(cells, 0, size)  # FREE is 0
    return cells


cdef int _resize(Table* t, size_t capacity) except -1:
    cdef Cell* old = t.cells
    cdef size_t old_capacity = 0 if old == NULL else t.mask + 1
    cdef Cell* cells = _alloc_cells(capacity)
    if cells == NULL:
        raise MemoryError()
    t.cells = cells
    t.mask = capacity - 1
    t.shift = 64
    while capacity > 1:
        capacity >>= 1
        t.shift -= 1
    cdef size_t i
    for i in range(old_capacity):
        if old[i].state != FREE:
            _probe(t, old[i].key)[0] = old[i]
    free(old)
    return 0


cdef inline int _reserve_one(Table* t) except -1:
    """Room for one more run, keeping the table at most three quarters full."""
    if 4 * (t.count + 1) > 3 * (t.mask + 1):
        _resize(t, 2 * (t.mask + 1))
    return 0


cdef inline void _prefetch_run(const Table* t, int64_t key) noexcept nogil:
    """Start fetching the cells a lookup and an erase of `key` will read."""
    cdef size_t i = _home(t, key)
    SB_PREFETCH(&t.cells[i])
    SB_PREFETCH(&t.cells[(i + 1) & t.mask])


cdef void _erase(Table* t, Cell* c) noexcept nogil:
    """Empty a cell, shifting later cells of its probe run back (no tombstones)."""
    cdef size_t i = c - t.cells, j = i, home
    while True:
        j = (j + 1) & t.mask
        if t.cells[j].state == FREE:
            break
        home = _home(t, t.cells[j].key)
        if ((j - home) & t.mask) >= ((j - i) & t.mask):
            t.cells[i] = t.cells[j]
            i = j
    t.cells[i].state = FREE
    t.count -= 1

# ------------------------------------------------------------------ the queue heaps

cdef struct Entry:
    uint64_t when         # the scheduled time, as sb_time_code
    uint64_t seq          # the key with its sign bit flipped: unsigned order is key order

cdef struct Heap:
    Entry* data           # data[1 + 4i .. 4 + 4i] (the children of i) share a cache line
    void* block
    size_t size
    size_t cap

cdef struct Queue:
    Heap heap
    Py_ssize_t length     # candidates
    int limit
    int occupied
    int priority
    bint paused
    bint alive


cdef inline Entry _entry(double scheduled, int64_t key) noexcept nogil:
    return Entry(when=sb_time_code(scheduled), seq=<uint64_t>key ^ SB_SIGN)


cdef inline int64_t _key_of(const Entry& entry) noexcept nogil:
    return <int64_t>(entry.seq ^ SB_SIGN)


cdef inline bint _before(const Entry& a, const Entry& b) noexcept nogil:
    """Earlier scheduled start first, then lower key: the reference's (scheduled, key)."""
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef bint _entry_less(const Entry& a, const Entry& b) noexcept nogil:
    return _before(a, b)


cdef int _heap_reserve(Heap* h, size_t cap) except -1:
    if cap <= h.cap:
        return 0
    # Entry 0 sits 48 bytes into a 64-byte aligned block, so entry 1 starts a cache line.
    cdef void* block = sb_aligned_alloc(64, (cap + 4) * sizeof(Entry))
    if block == NULL:
        raise MemoryError()
    cdef Entry* data = <Entry*>block + 3
    if h.size:
        memcpy(data, h.data, h.size * sizeof(Entry))
    free(h.block)
    h.block = block
    h.data = data
    h.cap = cap
    return 0


cdef void _heap_free(Heap* h) noexcept nogil:
    free(h.block)
    h.block = NULL
    h.data = NULL
    h.size = h.cap = 0


cdef inline int _heap_push(Heap* h, Entry entry) except -1:
    if h.size == h.cap:
        _heap_reserve(h, 16 if h.cap < 16 else 2 * h.cap)
    cdef Entry* d = h.data
    cdef size_t i = h.size, parent
    h.size += 1
    while i > 0:
        parent = (i - 1) >> 2
        if not _before(entry, d[parent]):
            break
        d[i] = d[parent]
        i = parent
    d[i] = entry
    return 0


cdef inline bint _less(const Entry* a, const Entry* b) noexcept nogil:
    """_before without branches: heap comparisons are coin flips to a branch predictor."""
    return (a.when < b.when) | ((a.when == b.when) & (a.seq < b.seq))


cdef inline size_t _least_child(const Entry* d, size_t first, size_t n) noexcept nogil:
    """The least of the children d[first .. first + 3] that exist (first < n)."""
    cdef size_t a, b, j
    if first + 4 <= n:
        a = first + _less(&d[first + 1], &d[first])
        b = first + 2 + _less(&d[first + 3], &d[first + 2])
        return b if _less(&d[b], &d[a]) else a
    a = first
    for j in range(first + 1, n):
        a = j if _less(&d[j], &d[a]) else a
    return a


cdef inline void _heap_pop(Heap* h) noexcept nogil:
    cdef Entry* d = h.data
    cdef size_t n = h.size - 1, i = 0, child
    h.size = n
    if n == 0:
        return
    cdef Entry last = d[n]
    while True:
        child = 4 * i + 1
        if child >= n:
            break
        if 4 * child + 1 < n:
            # The grandchildren are the four lines that follow, one of which is read next:
            # start them all while this level is compared.
            SB_PREFETCH(&d[4 * child + 1])
            SB_PREFETCH(&d[4 * child + 5])
            SB_PREFETCH(&d[4 * child + 9])
            SB_PREFETCH(&d[4 * child + 13])
        child = _least_child(d, child, n)
        if not _less(&d[child], &last):
            break
        d[i] = d[child]
        i = child
    d[i] = last


cdef inline int _limit_in(object limit, str field) except -2:
    if limit is None:
        return -1
    cdef long value = limit
    if value < 0:
        raise ValueError(f"{field} must not be negative, got {limit}")
    return <int>value


cdef inline object _limit_out(int limit):
    return None if limit < 0 else limit


@cython.final
cdef class PoolState:
    cdef int _limit
    cdef bint _paused
    cdef int _occupied
    cdef Py_ssize_t _candidates
    cdef dict _idents             # name -> ident
    cdef list _names              # ident -> name
    cdef vector[Queue] _queues    # by ident; removed queues stay, not alive
    cdef vector[int] _walk        # live idents by (priority, name): the waterfall
    cdef vector[int] _rank        # by ident: its position in _walk
    cdef vector[uint64_t] _ready  # by position in _walk: a bit set while a queue has candidates and runs
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
            _heap_free(&self._queues[i].heap)

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

    cdef inline bint _pool_full(self) noexcept:
        return self._limit >= 0 and self._occupied >= self._limit

    # ------------------------------------------------------------ queues

    cdef int _ident(self, str name) except -1:
        ident = self._idents.get(name)
        if ident is None:
            raise KeyError(f"unknown queue {name!r}")
        return <int>ident

    cdef void _reorder(self):
        order = []
        for name, ident in self._idents.items():
            order.append((self._queues[<int>ident].priority, name, ident))
        order.sort()
        self._walk.clear()
        self._rank.assign(self._queues.size(), -1)
        self._ready.assign((len(order) + 63) // 64, 0)
        for _, _, ident in order:
            self._rank[ident] = self._walk.size()
            self._walk.push_back(ident)
            self._note(ident)

    cdef inline void _note(self, int ident) noexcept:
        """Set the queue's bit in _ready from its state: admission walks only the set bits."""
        if self._rank[ident] < 0:
            return  # removed
        cdef size_t pos = self._rank[ident]
        cdef uint64_t bit = (<uint64_t>1) << (pos & 63)
        cdef Queue* q = &self._queues[ident]
        if q.length > 0 and not q.paused:
            self._ready[pos >> 6] |= bit
        else:
            self._ready[pos >> 6] &= ~bit

    def add_queue(self, str name, int priority, limit=None, paused=False):
        if name in self._idents:
            raise ValueError(f"queue {name!r} already exists")
        if priority < 1:
            raise ValueError(f"priority must be at least 1, got {priority}")
        cdef Queue queue
        queue.heap.data = NULL
        queue.heap.block = NULL
        queue.heap.size = queue.heap.cap = 0
        queue.length = 0
        queue.limit = _limit_in(limit, "limit")
        queue.occupied = 0
        queue.priority = priority
        queue.paused = bool(paused)
        queue.alive = True
        cdef int ident = <int>self._queues.size()
        self._queues.push_back(queue)
        self._mark.push_back(0)
        self._names.append(name)
        self._idents[name] = ident
        self._reorder()

    def update_queue(self, str name, *, priority=None, limit=UNCHANGED, paused=None):
        cdef Queue* queue = &self._queues[self._ident(name)]
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
        cdef int ident = self._ident(name)
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
        _heap_free(&queue.heap)
        queue.alive = False
        queue.length = queue.occupied = 0
        del self._idents[name]
        self._reorder()

    def queues(self):
        cdef int ident
        return [self._names[ident] for ident in self._walk]

    def queue_occupied(self, str name):
        return self._queues[self._ident(name)].occupied

    def queue_length(self, str name):
        return self._queues[self._ident(name)].length

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

    cdef Cell* _new_cell(self, int64_t key, str queue, int* ident) except NULL:
        """An empty cell for a new run of `queue`, which must exist."""
        _reserve_one(&self._table)
        cdef Cell* c = _probe(&self._table, key)
        if c.state != FREE:
            raise ValueError(f"run {key} already exists")
        ident[0] = self._ident(queue)
        c.key = key
        c.queue = ident[0]
        self._table.count += 1
        return c

    cdef int _enqueue(self, Cell* c, Queue* q, double scheduled) except -1:
        """The run in cell `c` becomes a candidate of `q`, due at `scheduled`."""
        c.state = CANDIDATE
        c.scheduled = scheduled
        q.length += 1
        self._candidates += 1
        if q.length == 1:
            self._note(c.queue)
        return self._push(q, c.key, scheduled)

    cdef int _push(self, Queue* q, int64_t key, double scheduled) except -1:
        _heap_push(&q.heap, _entry(scheduled, key))
        if q.heap.size > <size_t>(2 * q.length + 64):
            self._compact(q)
        return 0

    cdef void _compact(self, Queue* q) noexcept:
        """Keep each live entry once: sorted entries are a valid heap."""
        cdef Heap* h = &q.heap
        cdef size_t i, n = 0
        cdef int ident = q - &self._queues[0]
        for i in range(h.size):
            if self._live(h.data[i], ident) != NULL:
                h.data[n] = h.data[i]
                n += 1
        sort(h.data, h.data + n, _entry_less)
        h.size = 0
        for i in range(n):
            if h.size == 0 or _before(h.data[h.size - 1], h.data[i]):
                h.data[h.size] = h.data[i]
                h.size += 1

    cdef inline Cell* _live(self, const Entry& entry, int ident) noexcept:
        cdef Cell* c = _find(&self._table, _key_of(entry))
        if c != NULL and c.state == CANDIDATE and c.queue == ident and sb_time_code(c.scheduled) == entry.when:
            return c
        return NULL

    cdef inline void _vacate(self, Cell* c) noexcept:
        self._queues[c.queue].occupied -= 1
        self._occupied -= 1

    cdef inline void _occupy_cell(self, Cell* c) noexcept:
        c.state = OCCUPYING
        self._queues[c.queue].occupied += 1
        self._occupied += 1

    cdef inline void _unqueue(self, Cell* c) noexcept:
        """A candidate leaves its queue: its heap entry goes stale."""
        self._queues[c.queue].length -= 1
        self._candidates -= 1
        if self._queues[c.queue].length == 0:
            self._note(c.queue)

    cdef inline void _drop(self, Cell* c) noexcept:
        _erase(&self._table, c)

    def add_run(self, int64_t key, str queue, double scheduled):
        cdef int ident
        cdef Cell* c = self._new_cell(key, queue, &ident)
        self._enqueue(c, &self._queues[ident], scheduled)
        # Keys are creation sequences, so the next run added is likely key + 1.
        _prefetch_run(&self._table, <int64_t>(<uint64_t>key + 1))

    cdef Cell* _candidate(self, int64_t key) except NULL:
        cdef Cell* c = _find(&self._table, key)
        if c == NULL or c.state != CANDIDATE:
            raise KeyError(f"run {key} is not a candidate")
        return c

    cdef Cell* _occupying(self, int64_t key) except NULL:
        cdef Cell* c = _find(&self._table, key)
        if c == NULL or c.state != OCCUPYING:
            raise KeyError(f"run {key} does not occupy a slot")
        return c

    def remove_run(self, int64_t key):
        cdef Cell* c = _find(&self._table, key)
        if c == NULL:
            raise KeyError(f"unknown run {key}")
        if c.state == OCCUPYING:
            self._vacate(c)
        else:
            self._unqueue(c)
        self._drop(c)

    def reschedule(self, int64_t key, double scheduled):
        cdef Cell* c = self._candidate(key)
        cdef bint moved = sb_time_code(c.scheduled) != sb_time_code(scheduled)
        c.scheduled = scheduled
        if moved:  # else its live entry is already in the heap
            self._push(&self._queues[c.queue], key, scheduled)

    def release(self, int64_t key):
        cdef Cell* c = self._candidate(key)
        self._unqueue(c)
        self._occupy_cell(c)

    def occupy(self, int64_t key, str queue):
        cdef int ident
        cdef Cell* c = self._new_cell(key, queue, &ident)
        c.scheduled = 0.0
        self._occupy_cell(c)

    def finish(self, int64_t key):
        cdef Cell* c = self._occupying(key)
        self._vacate(c)
        self._drop(c)

    def requeue(self, int64_t key, double scheduled):
        cdef Cell* c = self._occupying(key)
        self._vacate(c)
        self._enqueue(c, &self._queues[c.queue], scheduled)

    # ------------------------------------------------------------ admission

    cdef bint _serve_only(self, object queues):
        """Mark the queues a worker serves (unknown names are ignored); False when it serves all."""
        if queues is None:
            return False
        self._epoch += 1
        for name in queues:
            ident = self._idents.get(name)
            if ident is not None:
                self._mark[<int>ident] = self._epoch
        return True

    cdef inline Cell* _head(self, Queue* q, int ident) noexcept:
        """The cell of the queue's earliest live candidate, dropping stale entries on the way."""
        cdef Cell* c
        while q.heap.size:
            c = self._live(q.heap.data[0], ident)
            if c != NULL:
                return c
            _heap_pop(&q.heap)
        return NULL

    def admit(self, double now, double prefetch_seconds, queues=None, limit=None):
        cdef long cap = -1 if limit is None else limit
        if self._paused or (limit is not None and cap <= 0):
            return []
        cdef double horizon = now + prefetch_seconds
        cdef bint only = self._serve_only(queues)
        cdef Queue* q = NULL
        cdef int ident
        cdef size_t pos, word
        cdef uint64_t bits
        cdef long count = 0
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
                    done = self._admit_from(q, ident, horizon, cap, &count)
                    if q.length == 0:
                        self._note(ident)
            if done:
                break
        if q != NULL:
            # The next admission likely starts here, with the top and then one of its
            # children: fetch their cells ahead of it.
            for pos in range(min(q.heap.size, 5)):
                _prefetch_run(&self._table, _key_of(q.heap.data[pos]))
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

    cdef inline bint _admit_from(self, Queue* q, int ident, double horizon, long cap, long* count) noexcept:
        """Release the queue's due runs into _taken; True once the pool or the worker is full."""
        cdef Cell* c
        cdef Entry head
        while True:
            if self._pool_full() or (cap >= 0 and count[0] >= cap):
                return True
            if (q.limit >= 0 and q.occupied >= q.limit) or q.length == 0:
                return False
            if q.heap.size == <size_t>q.length:
                # One entry per candidate and none stale: the top is live without asking
                # the table. Its cell is marked after the walk, once fetched.
                head = q.heap.data[0]
                if sb_time_of(head.when) > horizon:
                    return False
                _prefetch_run(&self._table, _key_of(head))
            else:
                c = self._head(q, ident)
                if c == NULL or c.scheduled > horizon:
                    return False
                head = q.heap.data[0]
                c.state = OCCUPYING  # before a duplicate entry of it can surface
            _heap_pop(&q.heap)
            q.length -= 1
            q.occupied += 1
            self._candidates -= 1
            self._occupied += 1
            self._taken.push_back(_key_of(head))
            count[0] += 1

    def next_due(self, queues=None):
        if self._paused:
            return None
        cdef bint only = self._serve_only(queues)
        cdef Queue* q
        cdef Cell* c
        cdef double best = 0.0
        cdef bint found = False
        cdef int ident
        for ident in self._walk:
            q = &self._queues[ident]
            if q.paused or (only and self._mark[ident] != self._epoch):
                continue
            c = self._head(q, ident)
            if c != NULL and (not found or c.scheduled < best):
                best = c.scheduled
                found = True
        return best if found else None

    def explain(self, int64_t key, double now, double prefetch_seconds):
        cdef Cell* found = _find(&self._table, key)
        if found == NULL:
            raise KeyError(f"unknown run {key}")
        cdef Cell run = found[0]
        cdef Queue* q = &self._queues[run.queue]
        name = self._names[run.queue]
        if run.state == OCCUPYING:
            return Explanation(key, name, "occupying", 0, 0, "released", "the run was released and holds a slot")
        cdef double horizon = now + prefetch_seconds
        cdef Entry mine = _entry(run.scheduled, key)
        # Rank in the waterfall of each queue whose due runs count as ahead in the pool: the
        # unpaused queues above this one (all unpaused ones when this queue is paused).
        cdef vector[uint8_t] ahead
        cdef int ident
        ahead.resize(self._queues.size(), 0)
        for ident in self._walk:
            if ident == run.queue:
                if not q.paused:
                    break
            elif not self._queues[ident].paused:
                ahead[ident] = 1
        cdef long queue_position = 0, due_ahead = 0, pool_position = 0
        cdef size_t i
        cdef Cell* c
        cdef Entry entry
        for i in range(self._table.mask + 1):
            c = &self._table.cells[i]
            if c.state != CANDIDATE:
                continue
            if c.queue == run.queue:
                entry = _entry(c.scheduled, c.key)
                if _before(entry, mine):
                    queue_position += 1
                    if c.scheduled <= horizon:
                        due_ahead += 1
            elif ahead[c.queue] and c.scheduled <= horizon:
                pool_position += 1
        if not q.paused:
            pool_position += due_ahead
        if self._paused:
            blocker, message = "pool_paused", "the work pool is paused"
        elif q.paused:
            blocker, message = "queue_paused", f"queue {name!r} is paused"
        elif run.scheduled > horizon:
            blocker, message = "not_due", f"scheduled {run.scheduled - now:.0f}s from now, beyond the {prefetch_seconds:g}s prefetch"
        elif q.limit >= 0 and q.occupied >= q.limit:
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
        cdef size_t i
        cdef Cell* c
        for i in range(self._table.mask + 1):
            c = &self._table.cells[i]
            if c.state == FREE:
                continue
            name = self._names[c.queue]
            if c.state == OCCUPYING:
                occupying.append((c.key, name, 0.0, True))
            else:
                candidates.append((c.key, name, c.scheduled, False))
        candidates.sort()
        occupying.sort()
        cdef Queue* q
        cdef int ident
        queues = []
        for ident in self._walk:
            q = &self._queues[ident]
            queues.append((self._names[ident], q.priority, _limit_out(q.limit), q.paused))
        return Snapshot(limit=_limit_out(self._limit), paused=self._paused, queues=queues, runs=candidates + occupying)

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
