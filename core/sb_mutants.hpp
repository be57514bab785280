/* The mutation check's switch: deliberate bugs the differential test must catch.

   A real build never defines SHIFTBOSS_MUTANT, and every SB_MUTANT test below is then a
   compile-time `false` that the compiler removes. `make mutants` (tests/mutants.py) builds
   the core once per mutant with SHIFTBOSS_MUTANT set to one of these numbers (setup.py
   maps SHIFTBOSS_MUTANT=limit_off_by_one in the environment to
   -DSHIFTBOSS_MUTANT=SB_MUTANT_LIMIT_OFF_BY_ONE) and expects the differential test
   (tests/unit/test_admission_twin.py) to fail against each.

   Invariant: each mutant bends exactly one rule, in one place, and a mutant build differs
   from the real one in nothing else. */
#pragma once

#define SB_MUTANT_NONE 0
#define SB_MUTANT_LIMIT_OFF_BY_ONE 1   /* a queue admits one run over its limit */
#define SB_MUTANT_TIES_FLIPPED 2       /* queues of equal priority walked in reverse name order */
#define SB_MUTANT_WRONG_BLOCKER 3      /* explain names the pool limit where the queue limit holds first */
#define SB_MUTANT_PAUSED_ADMITTED 4    /* a paused queue takes part in admission */
#define SB_MUTANT_KEY_ORDER_FLIPPED 5  /* runs due at the same time leave in reverse creation order */

#ifndef SHIFTBOSS_MUTANT
#define SHIFTBOSS_MUTANT SB_MUTANT_NONE
#endif

#define SB_MUTANT(name) (SHIFTBOSS_MUTANT == SB_MUTANT_##name)
