"""What a failure of the database means to the caller, said without its SQL.

A value the database refuses (too long for its column, a NUL it cannot store, a number out
of range) is the request's fault: INVALID_ARGUMENT. A write that conflicts with a stored
row is FAILED_PRECONDITION. Everything else (the database down, a lost connection, a lock
timeout, a deadlock) is UNAVAILABLE: the same request may succeed later. The statement,
its parameters and the driver's text go to the server's log only: they can hold other
callers' data.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from sqlalchemy import exc as sa

from shiftboss.errors import FailedPrecondition, InvalidArgument, ShiftbossError, Unavailable

__all__ = ["database_error", "is_database_error"]

log = logging.getLogger("shiftboss.server")

_REFUSED_VALUE = (
    "request: a value does not fit what the database stores (too long, out of range, "
    "or holding a character it cannot store)"
)
_CONFLICT = "request: it conflicts with what is stored now; read it again and retry"
_UNAVAILABLE = "the database is unavailable; try again shortly"

_VALUE_ERRORS: tuple[type[BaseException], ...] = (
    sa.DataError,
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
)
_CONFLICTS: tuple[type[BaseException], ...] = (sa.IntegrityError, asyncpg.IntegrityConstraintViolationError)
_OUTAGES: tuple[type[BaseException], ...] = (
    sa.DBAPIError,  # operational, interface, internal: the database's state, not the request
    sa.TimeoutError,  # no connection free in the pool
    sa.DisconnectionError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, (*_VALUE_ERRORS, *_CONFLICTS, *_OUTAGES, sa.StatementError))


def database_error(exc: BaseException) -> ShiftbossError | None:
    """The typed error a caller gets for a database failure; None when `exc` is none."""
    # SQLAlchemy wraps the driver's exception; the driver's own class says more.
    cause = getattr(exc, "orig", None)
    for candidate in (exc, cause.__cause__ if cause is not None else None, cause):
        if candidate is None:
            continue
        if isinstance(candidate, _VALUE_ERRORS):
            log.info("the database refused a value: %s", exc)
            return InvalidArgument(_REFUSED_VALUE, field="request")
        if isinstance(candidate, _CONFLICTS):
            log.info("the database refused a conflicting write: %s", exc)
            return FailedPrecondition(_CONFLICT, field="request")
    if isinstance(exc, sa.StatementError) and not isinstance(exc, sa.DBAPIError):
        # Raised while binding a parameter, before the database saw it: the value's fault.
        log.info("a value could not be sent to the database: %s", exc)
        return InvalidArgument(_REFUSED_VALUE, field="request")
    if isinstance(exc, _OUTAGES):
        log.warning("database failure: %s", exc)
        return Unavailable(_UNAVAILABLE)
    return None
