"""The scheduling core: admission and the priority waterfall of one work pool.

No I/O and no imports of grpc, SQL, services or workers. Two implementations with one
API: `_reference` (pure Python, the specification) and `_admission` (compiled by
`pip install`). The compiled one is used unless SHIFTBOSS_PURE_PYTHON_CORE=1; a missing
build is an ImportError, never a silent fallback.
"""

from __future__ import annotations

import os

from shiftboss.core._reference import PoolState as ReferencePoolState
from shiftboss.core._types import BLOCKERS, MAX_LIMIT, MAX_PRIORITY, UNCHANGED, Explanation, Snapshot

if os.environ.get("SHIFTBOSS_PURE_PYTHON_CORE") == "1":
    PoolState = ReferencePoolState
    COMPILED = False
else:
    from shiftboss.core._admission import PoolState as CompiledPoolState

    PoolState = CompiledPoolState  # type: ignore[misc]
    COMPILED = True

__all__ = ["PoolState", "ReferencePoolState", "Explanation", "Snapshot", "BLOCKERS", "MAX_LIMIT", "MAX_PRIORITY", "UNCHANGED", "COMPILED"]


def compiled_pool_state() -> type:
    """The compiled implementation, whatever SHIFTBOSS_PURE_PYTHON_CORE says (for tests and benches)."""
    from shiftboss.core._admission import PoolState as compiled

    return compiled
