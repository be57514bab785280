"""The scheduling core: admission and the priority waterfall of one work pool.

No I/O and no imports of grpc, SQL, services or workers.
"""

from __future__ import annotations

import os

if os.environ.get("SHIFTBOSS_PURE_PYTHON_CORE") == "1":
    COMPILED = False
else:
    from shiftboss.core import _admission  # noqa: F401  (a failed build must fail loudly)

    COMPILED = True

__all__ = ["COMPILED"]
