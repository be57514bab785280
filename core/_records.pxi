# Included first by _admission.pyx: the C++ headers the core builds on (core/*.hpp) and
# its records. (Declarations that asyncpg keeps in a .pxd: Cython would look for that as
# shiftboss/core/_admission.pxd, but the package lives in core/.)

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uint8_t
from libcpp.vector cimport vector


cdef extern from "sb_platform.hpp" nogil:
    void SB_PREFETCH(const void* p) noexcept
    uint64_t SB_GOLDEN
    void* sb_aligned_alloc(size_t alignment, size_t size) noexcept
    void sb_advise_huge(void* p, size_t size) noexcept
    int __builtin_ctzll(unsigned long long x) noexcept


cdef extern from "sb_time.hpp" nogil:
    uint64_t sb_time_code(double t) noexcept
    double sb_time_of(uint64_t code) noexcept


cdef extern from "sb_entries.hpp" nogil:
    uint64_t SB_SIGN

    ctypedef struct Entry "SbEntry":
        uint64_t when     # the scheduled time, as sb_time_code
        uint64_t seq      # the key with its sign bit flipped: unsigned order is key order

    bint sb_before(const Entry& a, const Entry& b) noexcept

    ctypedef struct Cursor "SbCursor":
        size_t block
        uint32_t pos
        int started

    cdef cppclass Runs "SbRuns":
        size_t size
        const Entry& front()
        const Entry* peek(size_t i)
        const Entry* next(Cursor& at)
        void pop_front()
        void push(const Entry& x) except +
        void copy_to(vector[Entry]& out) except +
        void assign(const vector[Entry]& entries) except +
        void clear()


cdef extern from "sb_rules.hpp" nogil:
    int64_t SB_NO_LIMIT
    bint sb_pool_full(int64_t occupied, int64_t limit) noexcept
    bint sb_queue_full(int64_t occupied, int64_t limit) noexcept
    bint sb_slots_taken(int64_t ahead, int64_t occupied, int64_t limit) noexcept
    bint sb_queue_ready(int64_t candidates, bint paused) noexcept
    const bint sb_ties_reversed

    ctypedef enum SbBlocker:
        SB_BLOCKED_BY_NOTHING
        SB_POOL_PAUSED
        SB_QUEUE_PAUSED
        SB_NOT_DUE
        SB_QUEUE_LIMIT
        SB_POOL_LIMIT
        SB_QUEUE_RUNS_AHEAD
        SB_POOL_RUNS_AHEAD

    SbBlocker sb_blocker(bint pool_paused, bint queue_paused, bint not_due, bint queue_full,
                         bint pool_full, bint queue_taken, bint pool_taken) noexcept


cdef enum:
    FREE = 0
    CANDIDATE = 1
    OCCUPYING = 2


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


cdef struct Queue:
    Runs runs             # candidates' entries, earliest first (stale ones included)
    Py_ssize_t length     # candidates
    int64_t limit         # SB_NO_LIMIT, or 0 .. 2**63 - 1
    int64_t occupied
    int64_t priority
    bint paused
    bint alive
