# Included by _admission.pyx: the run table, where every run of the pool lives.
#
# One open-addressing hash table (linear probing, 32-byte cells, see Cell in the .pxd)
# keyed by the run's key: a lookup is one probe into one cache line, with no separate
# record to chase. Invariants: the capacity is a power of two and the table is at most
# three quarters full, so every probe ends at a FREE cell; a key is in at most one cell,
# found from its home cell without crossing a FREE one (erase shifts later cells back
# instead of leaving tombstones); `count` is the number of cells that are not FREE.

from libc.stdlib cimport calloc, free
from libc.string cimport memset

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
