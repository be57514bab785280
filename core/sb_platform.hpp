/* What the run table asks of the machine: prefetches, aligned blocks, huge pages, a hash.

   Invariants: nothing here changes what the core computes, only how fast memory answers.
   sb_aligned_alloc returns NULL on failure (the caller raises MemoryError); sb_advise_huge
   is advice that the kernel may ignore. */
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Start fetching a cache line that will be written soon. */
#define SB_PREFETCH(p) __builtin_prefetch((const void*)(p), 1, 3)

/* Fibonacci hashing: the key times 2**64 / phi, its top bits index the table. Keys are
   creation sequences, and consecutive ones land far apart. */
#define SB_GOLDEN 0x9E3779B97F4A7C15ULL

static inline void* sb_aligned_alloc(size_t alignment, size_t size) {
    void* p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    return p;
}

/* Large tables ask for transparent huge pages: random probes then miss the TLB far less. */
static inline void sb_advise_huge(void* p, size_t size) {
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#else
    (void)p; (void)size;
#endif
}
