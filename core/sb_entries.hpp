/* A queue's candidates in waterfall order: (scheduled, key) entries in sorted blocks.

   An entry is 16 bytes: the scheduled time as sb_time_code, and the run's key with its
   sign bit flipped, so that unsigned order is key order. Entries order by time, then key:
   the reference's (scheduled, key) tuples.

   SbRuns keeps a queue's entries in blocks of up to SB_BLOCK sorted entries. Taking the
   earliest reads the front of the first block: no sifting, which is what a heap pays for
   at every release. Adding binary-searches the blocks' last entries (kept in one array)
   and shifts part of one block; a full block splits.

   Invariants of SbRuns:
   - blocks[first ..] each hold at least one entry, in [lo, hi); blocks before `first`
     are freed and NULL (they are erased once they are half of the array).
   - Concatenated in order, the blocks' entries are sorted by sb_before (equal entries,
     the copies of a run rescheduled away and back, may sit side by side).
   - last[i] is the last entry of blocks[i]; size is the number of entries.
   SbRuns knows nothing of staleness: the core decides which entries are live. */
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <new>
#include <vector>

#include "sb_mutants.hpp"

#define SB_SIGN 0x8000000000000000ULL

struct SbEntry { uint64_t when; uint64_t seq; };

/* Equal times: the lower key (the earlier created run) first. */
#if SB_MUTANT(KEY_ORDER_FLIPPED)
#define SB_SEQ_BEFORE(a, b) ((a) > (b))
#else
#define SB_SEQ_BEFORE(a, b) ((a) < (b))
#endif

static inline bool sb_before(const SbEntry& a, const SbEntry& b) {
    return a.when < b.when || (a.when == b.when && SB_SEQ_BEFORE(a.seq, b.seq));
}

/* Binary searches whose steps choose with a conditional move, not a branch: each
   comparison is a coin flip that a branch predictor would miss half the time. */
static inline bool sb_lt(const SbEntry& a, const SbEntry& b) {
    return (a.when < b.when) | ((a.when == b.when) & SB_SEQ_BEFORE(a.seq, b.seq));
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

#define SB_BLOCK 128  /* 16-byte entries: 2 KiB a block */
struct SbBlock { uint32_t lo, hi; SbEntry e[SB_BLOCK]; };

/* A place in an SbRuns walk; zero-initialise it to start from the earliest entry. */
struct SbCursor { size_t block; uint32_t pos; int started; };

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

    /* Walk the entries in order without changing them: `at` starts at 0 (see SbCursor). */
    const SbEntry* next(SbCursor& at) const {
        if (!at.started) { at.block = first; at.pos = first < blocks.size() ? blocks[first]->lo : 0; at.started = 1; }
        while (at.block < blocks.size()) {
            const SbBlock* b = blocks[at.block];
            if (at.pos < b->hi) return &b->e[at.pos++];
            if (++at.block < blocks.size()) at.pos = blocks[at.block]->lo;
        }
        return NULL;
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
