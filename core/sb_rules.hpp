/* The admission rules that the waterfall and explain share, one small function each.

   Invariants:
   - A limit is an int64 from 0 to 2**63 - 1, or SB_NO_LIMIT (-1): both cores refuse a
     larger one (MAX_LIMIT in _types.py), so none is ever truncated. Occupied counts are
     never negative.
   - A pool or a queue is full when it has a limit and occupied >= limit. A limit lowered
     below what is occupied admits nothing more and takes nothing back.
   - A queue takes part in admission while it has candidates and is not paused; a paused
     pool admits nothing (the caller checks that before any queue).
   - Queues are walked by (priority, name): equal priorities go in name order.
   - explain's blocker is the first of these that holds, in the order of BLOCKERS in
     _types.py: pool paused, queue paused, not due, queue limit, pool limit, due runs ahead
     in the queue that take its free slots, due runs ahead in the pool's waterfall that
     take the pool's free slots; else nothing blocks it.
   Each rule is written once here; a mutant (sb_mutants.hpp) bends one of them. */
#pragma once
#include <stdint.h>

#include "sb_mutants.hpp"

#define SB_NO_LIMIT (-1)

static inline bool sb_pool_full(int64_t occupied, int64_t limit) {
    return limit >= 0 && occupied >= limit;
}

static inline bool sb_queue_full(int64_t occupied, int64_t limit) {
#if SB_MUTANT(LIMIT_OFF_BY_ONE)
    return limit >= 0 && occupied > limit;
#else
    return limit >= 0 && occupied >= limit;
#endif
}

/* `ahead` due runs take all the free slots under `limit` (which is not full). */
static inline bool sb_slots_taken(int64_t ahead, int64_t occupied, int64_t limit) {
    return limit >= 0 && ahead >= limit - occupied;
}

static inline bool sb_queue_ready(int64_t candidates, bool paused) {
#if SB_MUTANT(PAUSED_ADMITTED)
    (void)paused;
    return candidates > 0;
#else
    return candidates > 0 && !paused;
#endif
}

/* Queues of equal priority: whether the walk takes them in reverse name order. */
static const bool sb_ties_reversed = SB_MUTANT(TIES_FLIPPED);

enum SbBlocker {
    SB_BLOCKED_BY_NOTHING,
    SB_POOL_PAUSED,
    SB_QUEUE_PAUSED,
    SB_NOT_DUE,
    SB_QUEUE_LIMIT,
    SB_POOL_LIMIT,
    SB_QUEUE_RUNS_AHEAD,
    SB_POOL_RUNS_AHEAD,
};

static inline SbBlocker sb_blocker(bool pool_paused, bool queue_paused, bool not_due, bool queue_full,
                                   bool pool_full, bool queue_taken, bool pool_taken) {
    if (pool_paused) return SB_POOL_PAUSED;
    if (queue_paused) return SB_QUEUE_PAUSED;
    if (not_due) return SB_NOT_DUE;
#if SB_MUTANT(WRONG_BLOCKER)
    if (pool_full) return SB_POOL_LIMIT;
#endif
    if (queue_full) return SB_QUEUE_LIMIT;
    if (pool_full) return SB_POOL_LIMIT;
    if (queue_taken) return SB_QUEUE_RUNS_AHEAD;
    if (pool_taken) return SB_POOL_RUNS_AHEAD;
    return SB_BLOCKED_BY_NOTHING;
}
