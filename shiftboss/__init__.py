"""shiftboss: work pools, work queues and workers over a gRPC mesh.

`Client` and `AsyncClient` load on first use, so that `shiftboss.core` and the run
launcher do not pay for importing grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shiftboss.client import AsyncClient, Client

__all__ = ["Client", "AsyncClient", "errors"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from shiftboss import client

        return getattr(client, name)
    if name == "errors":
        from shiftboss import errors

        return errors
    raise AttributeError(f"module 'shiftboss' has no attribute {name!r}")
