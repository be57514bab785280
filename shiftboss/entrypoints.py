"""Whether a work pool's entrypoint policy admits an entrypoint.

A pool's `allowed_entrypoints` lists module names (`pkg`, `pkg.flows`: the module and those
under it, and the files of its folder) and folders relative to the run's working directory
(`flows/`); `*` admits
anything, and an empty list leaves the choice to each worker (see the launcher's own
policy, shiftboss.workers.execute). The scheduler refuses a deployment whose entrypoint the
pool does not admit, and the launcher checks again before it imports anything. Pure Python,
so the launcher pays nothing for it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

__all__ = ["admitted", "check_patterns"]


def _is_folder(pattern: str) -> bool:
    return "/" in pattern or pattern.endswith(".py")


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """The patterns as kept (trimmed); ValueError naming the first that cannot match anything."""
    kept = []
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            raise ValueError("an empty pattern")
        if pattern != "*" and not _is_folder(pattern):
            if not all(part.isidentifier() for part in pattern.split(".")):
                raise ValueError(f"{pattern!r} is neither a module name (pkg.flows), a folder (flows/) nor '*'")
        if _is_folder(pattern) and (posixpath.isabs(pattern) or posixpath.normpath(pattern).startswith("..")):
            raise ValueError(f"{pattern!r}: folders are relative to the run's working directory, and stay inside it")
        kept.append(pattern)
    return kept


def admitted(entrypoint: str, patterns: Sequence[str]) -> bool:
    if not patterns or "*" in patterns:
        return True
    target = entrypoint.rpartition(":")[0]
    if target.endswith(".py"):
        path = posixpath.normpath(target)
        if posixpath.isabs(path) or path.startswith(".."):
            return False
        for pattern in patterns:
            # A module name admits the files of its folder too: `etl.flows` is `etl/flows/`.
            folder = posixpath.normpath(pattern if _is_folder(pattern) else pattern.replace(".", "/"))
            if path == folder or folder in (".", "") or path.startswith(folder.rstrip("/") + "/"):
                return True
        return False
    return any(not _is_folder(p) and (target == p or target.startswith(p + ".")) for p in patterns)
