# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, binding=False
# distutils: language = c++
"""The compiled scheduling core: the same admission as `_reference`, on flat C++ storage.

Runs live in one open-addressing hash table (linear probing, 32-byte cells) keyed by the
run's key: a lookup is one probe into one cache line, with no separate record to chase.
Each queue keeps 16-byte (scheduled, key) entries for its candidates in order, in sorted
blocks: admission takes entries off the front of the first block, and adding a run
shifts part of one block. (A heap would make each release a chain of comparisons down
its levels, which was most of the cost of an admission.) As in the reference, removing
or rescheduling a candidate leaves its old entry behind; an entry is live while the
run's cell still says "candidate of this queue at this time", stale entries are dropped
when they reach the front, and a queue's entries are compacted when the stale ones
outnumber the live ones.

Admission takes entries without consulting the table whenever a queue holds no stale
entry (one entry per candidate), and marks the released runs' cells after the walk, so
the cache misses on those cells overlap instead of queueing one behind the other. Limits
and priorities are int64, with -1 for "no limit"; larger ones are refused, as the
reference refuses them (MAX_LIMIT, MAX_PRIORITY in _types.py).
"""

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from libcpp.vector cimport vector

from shiftboss.core._types import MAX_LIMIT, UNCHANGED, Explanation, Snapshot, check_limit, check_priority, time_refused

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    #define SB_PREFETCH(p) __builtin_prefetch((const void*)(p), 1, 3)
    #define SB_GOLDEN 0x9E3779B97F4A7C15ULL
    #define SB_SIGN 0x8000000000000000ULL
    /* A time as an unsigned int in the same order (-0.0 counts as 0.0), and back: ordering
       entries compares ints, which is quicker than comparing doubles. */
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

# ------------------------------------------------------------------ the queue orders

cdef extern from *:
    """
    #include <vector>
    #include <algorithm>
    #include <new>
    struct SbEntry { uint64_t when; uint64_t seq; };
    static inline bool sb_before(const SbEntry& a, const SbEntry& b) {
        return a.when < b.when || (a.when == b.when && a.seq < b.seq);
    }

    /* Binary searches whose steps choose with a conditional move, not a branch: each
       comparison is a coin flip that a branch predictor would miss half the time. */
    static inline bool sb_lt(const SbEntry& a, const SbEntry& b) {
        return (a.when < b.when) | ((a.when == b.when) & (a.seq < b.seq));
    }
    /* How many of a[0 .. n) are before x (n > 0). */
    static inline size_t sb_count_before(const SbEntry* a, size_t n, const SbEntry& x) {
        const SbEntry* base = a;
        while (n > 1) {
            size_t half = n / 2;
            base = sb_lt(base[half], x) ? base + half : base;
            n -= half;
        }
        return (base - a) + sb_lt(base[0], x);
    }
    /* How many of a[0 .. n) are not after x (n > 0). */
    static inline size_t sb_count_not_after(const SbEntry* a, size_t n, const SbEntry& x) {
        const SbEntry* base = a;
        while (n > 1) {
            size_t half = n / 2;
            base = sb_lt(x, base[half]) ? base : base + half;
            n -= half;
        }
        return (base - a) + !sb_lt(x, base[0]);
    }

    /* A queue's entries in (scheduled, key) order, in blocks of up to SB_BLOCK sorted
       entries. Taking the earliest reads the front of the first block: no sifting, which
       is what a heap pays for at every release. Adding binary-searches the blocks' last
       entries (kept in one array) and shifts part of one block; a full block splits. */
    #define SB_BLOCK 128
    struct SbBlock { uint32_t lo, hi; SbEntry e[SB_BLOCK]; };

    struct SbRuns {
        std::vector<SbBlock*> blocks;  /* blocks[first ..] hold entries, none empty */
        std::vector<SbEntry> last;     /* last[i]: the last entry of blocks[i] */
        size_t first = 0;
        size_t size = 0;

        const SbEntry& front() const { const SbBlock* b = blocks[first]; return b->e[b->lo]; }

        /* The i-th entry in order, or NULL past the first block (for prefetching). */
        const SbEntry* peek(size_t i) const {
            if (first == blocks.size()) return NULL;
            const SbBlock* b = blocks[first];
            return b->lo + i < b->hi ? &b->e[b->lo + i] : NULL;
        }

        void pop_front() {
            SbBlock* b = blocks[first];
            size--;
            if (++b->lo < b->hi) return;
            free(b);
            blocks[first++] = NULL;
            if (first == blocks.size()) {
                blocks.clear(); last.clear(); first = 0;
            } else if (first >= 64 && 2 * first >= blocks.size()) {
                blocks.erase(blocks.begin(), blocks.begin() + first);
                last.erase(last.begin(), last.begin() + first);
                first = 0;
            }
        }

        static SbBlock* new_block() {
            SbBlock* b = (SbBlock*)malloc(sizeof(SbBlock));
            if (!b) throw std::bad_alloc();
            b->lo = b->hi = 0;
            return b;
        }

        void push(const SbEntry& x) {
            if (first == blocks.size()) {
                blocks.reserve(1); last.reserve(1);
                SbBlock* b = new_block();
                b->e[0] = x; b->hi = 1;
                blocks.push_back(b); last.push_back(x);
                size++;
                return;
            }
            /* The first block whose last entry is not before x, else the last block. */
            size_t i = first + sb_count_before(&last[first], last.size() - first, x);
            if (i == blocks.size()) i--;
            SbBlock* b = blocks[i];
            if (b->lo > 0 && !sb_before(b->e[b->lo], x)) {
                /* Before the whole block, with room there: no shifting. */
                b->e[--b->lo] = x;
                size++;
                return;
            }
            if (b->hi - b->lo == SB_BLOCK && i + 1 == blocks.size() && sb_before(last[i], x)) {
                /* After everything, and the last block is full: start a new one rather than
                   split, so runs added in order fill their blocks. */
                blocks.reserve(blocks.size() + 1); last.reserve(last.size() + 1);
                SbBlock* c = new_block();
                c->e[0] = x; c->hi = 1;
                blocks.push_back(c); last.push_back(x);
                size++;
                return;
            }
            if (b->hi - b->lo == SB_BLOCK) {
                /* Split: the upper half moves to a new block after this one. */
                blocks.reserve(blocks.size() + 1); last.reserve(last.size() + 1);
                SbBlock* c = new_block();
                uint32_t half = b->lo + SB_BLOCK / 2;
                memcpy(c->e, &b->e[half], (b->hi - half) * sizeof(SbEntry));
                c->hi = b->hi - half;
                b->hi = half;
                blocks.insert(blocks.begin() + i + 1, c);
                last.insert(last.begin() + i + 1, last[i]);
                last[i] = b->e[b->hi - 1];
                if (sb_before(last[i], x)) { i++; b = c; }
            }
            if (b->hi == SB_BLOCK) {
                /* Room only before the front: slide the entries back to the start. */
                memmove(b->e, &b->e[b->lo], (b->hi - b->lo) * sizeof(SbEntry));
                b->hi -= b->lo; b->lo = 0;
            }
            SbEntry* at = &b->e[b->lo] + sb_count_not_after(&b->e[b->lo], b->hi - b->lo, x);
            memmove(at + 1, at, (&b->e[b->hi] - at) * sizeof(SbEntry));
            *at = x;
            b->hi++;
            if (at == &b->e[b->hi - 1]) last[i] = x;
            size++;
        }

        /* Every entry, in order. */
        void copy_to(std::vector<SbEntry>& out) const {
            for (size_t i = first; i < blocks.size(); i++)
                out.insert(out.end(), &blocks[i]->e[blocks[i]->lo], &blocks[i]->e[blocks[i]->hi]);
        }

        void clear() {
            for (size_t i = first; i < blocks.size(); i++) free(blocks[i]);
            blocks.clear(); last.clear(); first = 0; size = 0;
        }

        /* Replace the entries with `sorted` (in order), in full blocks. */
        void assign(const std::vector<SbEntry>& sorted) {
            clear();
            size_t count = (sorted.size() + SB_BLOCK - 1) / SB_BLOCK;
            blocks.reserve(count); last.reserve(count);
            for (size_t at = 0; at < sorted.size(); at += SB_BLOCK) {
                SbBlock* b = new_block();
                size_t n = std::min((size_t)SB_BLOCK, sorted.size() - at);
                memcpy(b->e, &sorted[at], n * sizeof(SbEntry));
                b->hi = (uint32_t)n;
                blocks.push_back(b); last.push_back(sorted[at + n - 1]);
            }
            size = sorted.size();
        }
    };
    """
    ctypedef struct Entry "SbEntry":
        uint64_t when     # the scheduled time, as sb_time_code
        uint64_t seq      # the key with its sign bit flipped: unsigned order is key order

    cdef cppclass Runs "SbRuns":
        size_t size
        const Entry& front()
        const Entry* peek(size_t i)
        void pop_front()
        void push(const Entry& x) except +
        void copy_to(vector[Entry]& out) except +
        void assign(const vector[Entry]& entries) except +
        void clear()


cdef struct Queue:
    Runs runs             # candidates' entries, earliest first (stale ones included)
    Py_ssize_t length     # candidates
    int64_t limit         # -1, or 0 .. 2**63 - 1
    int64_t occupied
    int64_t priority
    bint paused
    bint alive


cdef inline Entry _entry(double scheduled, int64_t key) noexcept nogil:
    cdef Entry entry
    entry.when = sb_time_code(scheduled)
    entry.seq = <uint64_t>key ^ SB_SIGN
    return entry


cdef inline int64_t _key_of(const Entry& entry) noexcept nogil:
    return <int64_t>(entry.seq ^ SB_SIGN)


cdef inline bint _before(const Entry& a, const Entry& b) noexcept nogil:
    """Earlier scheduled start first, then lower key: the reference's (scheduled, key)."""
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef inline int64_t _limit_in(object limit, str field) except -2:
    check_limit(field, limit)
    return -1 if limit is None else <int64_t>limit


cdef inline object _limit_out(int64_t limit):
    return None if limit < 0 else limit


cdef inline int _check_time(double scheduled) except -1:
    if scheduled != scheduled:
        raise time_refused("scheduled", scheduled)
    return 0


cdef double _horizon(double now, double prefetch_seconds) except? -1.0:
    """The latest scheduled start released now; refused when it is no number (inf - inf)."""
    cdef double horizon = now + prefetch_seconds
    if horizon != horizon:
        raise time_refused("now + prefetch_seconds", f"{now} + {prefetch_seconds}")
    return horizon


@cython.final
cdef class PoolState:
    cdef int64_t _limit
    cdef bint _paused
    cdef int64_t _occupied
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

    def add_queue(self, str name, priority, limit=None, paused=False):
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
        self._reorder()

    def update_queue(self, str name, *, priority=None, limit=UNCHANGED, paused=None):
        cdef Queue* queue = &self._queues[self._ident(name)]
        # Every value is checked before any is applied: a refused update changes nothing.
        if priority is not None:
            check_priority(priority)
        cdef int64_t new_limit = queue.limit if limit is UNCHANGED else _limit_in(limit, "limit")
        if priority is not None:
            queue.priority = <int64_t>priority
        queue.limit = new_limit
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
        queue.runs.clear()
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

    def queue_limit(self, str name):
        return _limit_out(self._queues[self._ident(name)].limit)

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

    cdef Cell* _new_cell(self, int64_t key, str queue, int* ident, double scheduled) except NULL:
        """An empty cell for a new run of `queue`, which must exist, due at `scheduled`."""
        _reserve_one(&self._table)
        cdef Cell* c = _probe(&self._table, key)
        if c.state != FREE:
            raise ValueError(f"run {key} already exists")
        ident[0] = self._ident(queue)
        _check_time(scheduled)
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
        q.runs.push(_entry(scheduled, key))
        if q.runs.size > <size_t>(2 * q.length + 64):
            self._compact(q)
        return 0

    cdef int _compact(self, Queue* q) except -1:
        """Drop the stale entries, and the copies of a live one (a run rescheduled away and back)."""
        cdef vector[Entry] entries, live
        cdef Entry entry
        cdef int ident = q - &self._queues[0]
        q.runs.copy_to(entries)
        for entry in entries:
            if self._live(entry, ident) != NULL and (live.empty() or _before(live.back(), entry)):
                live.push_back(entry)
        q.runs.assign(live)
        return 0

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
        """A candidate leaves its queue: its entry goes stale."""
        self._queues[c.queue].length -= 1
        self._candidates -= 1
        if self._queues[c.queue].length == 0:
            self._note(c.queue)

    cdef inline void _drop(self, Cell* c) noexcept:
        _erase(&self._table, c)

    def add_run(self, int64_t key, str queue, double scheduled):
        cdef int ident
        cdef Cell* c = self._new_cell(key, queue, &ident, scheduled)
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
        _check_time(scheduled)
        cdef bint moved = sb_time_code(c.scheduled) != sb_time_code(scheduled)
        c.scheduled = scheduled
        if moved:  # else its live entry is already in place
            self._push(&self._queues[c.queue], key, scheduled)

    def release(self, int64_t key):
        cdef Cell* c = self._candidate(key)
        self._unqueue(c)
        self._occupy_cell(c)

    def occupy(self, int64_t key, str queue):
        cdef int ident
        cdef Cell* c = self._new_cell(key, queue, &ident, 0.0)
        c.scheduled = 0.0
        self._occupy_cell(c)

    def finish(self, int64_t key):
        cdef Cell* c = self._occupying(key)
        self._vacate(c)
        self._drop(c)

    def requeue(self, int64_t key, double scheduled):
        cdef Cell* c = self._occupying(key)
        _check_time(scheduled)
        self._vacate(c)
        self._enqueue(c, &self._queues[c.queue], scheduled)

    # ------------------------------------------------------------ admission

    cdef bint _serve_only(self, object queues) except -1:
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
        while q.runs.size:
            c = self._live(q.runs.front(), ident)
            if c != NULL:
                return c
            q.runs.pop_front()
        return NULL

    def admit(self, double now, double prefetch_seconds, queues=None, limit=None):
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
        cdef bint only = self._serve_only(queues)
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
                    done = self._admit_from(q, ident, horizon, cap, &count)
                    if q.length == 0:
                        self._note(ident)
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

    cdef inline bint _admit_from(self, Queue* q, int ident, double horizon, int64_t cap, int64_t* count) noexcept:
        """Release the queue's due runs into _taken; True once the pool or the worker is full."""
        cdef Cell* c
        cdef Entry head
        while True:
            if self._pool_full() or (cap >= 0 and count[0] >= cap):
                return True
            if (q.limit >= 0 and q.occupied >= q.limit) or q.length == 0:
                return False
            if q.runs.size == <size_t>q.length:
                # One entry per candidate and none stale: the top is live without asking
                # the table. Its cell is marked after the walk, once fetched.
                head = q.runs.front()
                if sb_time_of(head.when) > horizon:
                    return False
                _prefetch_run(&self._table, _key_of(head))
            else:
                c = self._head(q, ident)
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
        cdef double horizon = _horizon(now, prefetch_seconds)
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
        cdef int64_t queue_position = 0, due_ahead = 0, pool_position = 0
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
