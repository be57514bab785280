# Included by _admission.pyx: what the core tells about itself, explain and snapshot.
#
# Both read the table cell by cell (no queue order is trusted) and change nothing.
# explain's positions count candidates by (scheduled, key), as admission orders them, and
# its blocker is the first rule of sb_blocker (sb_rules.hpp) that holds. A snapshot lists
# candidates by key, then occupying runs by key, as the reference does.


cdef object _explain(PoolState self, int64_t key, double now, double prefetch_seconds):
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
    for i in range(self._table.mask + 1):
        c = &self._table.cells[i]
        if c.state != CANDIDATE:
            continue
        if c.queue == run.queue:
            if sb_before(_entry(c.scheduled, c.key), mine):
                queue_position += 1
                if c.scheduled <= horizon:
                    due_ahead += 1
        elif ahead[c.queue] and c.scheduled <= horizon:
            pool_position += 1
    if not q.paused:
        pool_position += due_ahead
    cdef SbBlocker blocker = sb_blocker(
        self._paused,
        q.paused,
        run.scheduled > horizon,
        sb_queue_full(q.occupied, q.limit),
        sb_pool_full(self._occupied, self._limit),
        sb_slots_taken(due_ahead, q.occupied, q.limit),
        sb_slots_taken(pool_position, self._occupied, self._limit),
    )
    if blocker == SB_POOL_PAUSED:
        why, message = "pool_paused", "the work pool is paused"
    elif blocker == SB_QUEUE_PAUSED:
        why, message = "queue_paused", f"queue {name!r} is paused"
    elif blocker == SB_NOT_DUE:
        why, message = "not_due", f"scheduled {run.scheduled - now:.0f}s from now, beyond the {prefetch_seconds:g}s prefetch"
    elif blocker == SB_QUEUE_LIMIT:
        why, message = "queue_limit", f"waiting for queue {name!r} limit ({q.occupied}/{q.limit} occupied)"
    elif blocker == SB_POOL_LIMIT:
        why, message = "pool_limit", f"waiting for the work pool limit ({self._occupied}/{self._limit} occupied)"
    elif blocker == SB_QUEUE_RUNS_AHEAD:
        why = "runs_ahead"
        message = f"{due_ahead} due runs ahead of it in queue {name!r} take its {q.limit - q.occupied} free slots"
    elif blocker == SB_POOL_RUNS_AHEAD:
        why = "runs_ahead"
        message = f"{pool_position} due runs ahead of it in the waterfall take the pool's {self._limit - self._occupied} free slots"
    else:
        why, message = "none", "the next admission releases it"
    return Explanation(key, name, "candidate", queue_position, pool_position, why, message)


cdef object _snapshot(PoolState self):
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
