/* Scheduled times as unsigned ints in the same order: ordering entries compares ints,
   which is quicker than comparing doubles.

   Invariants, for every double t that is not NaN (both cores refuse NaN times):
   - a < b  <=>  sb_time_code(a) < sb_time_code(b), and a == b <=> equal codes; so -0.0
     and 0.0 share one code, and -inf and inf order as they should.
   - sb_time_of(sb_time_code(t)) == t (as a value: -0.0 comes back as 0.0). */
#pragma once
#include <stdint.h>
#include <string.h>

static inline uint64_t sb_time_code(double t) {
    uint64_t bits;
    t += 0.0;  /* -0.0 + 0.0 is 0.0 */
    memcpy(&bits, &t, 8);
    return (bits >> 63) ? ~bits : (bits | 0x8000000000000000ULL);
}

static inline double sb_time_of(uint64_t code) {
    uint64_t bits = (code >> 63) ? (code & 0x7FFFFFFFFFFFFFFFULL) : ~code;
    double t;
    memcpy(&t, &bits, 8);
    return t;
}
