"""Errors that are part of the API.

Domain code raises these; the server maps them to gRPC status codes, and the SDK turns
a failed call back into the same class, carrying the server's message. This module
imports nothing of grpc so that any layer may use it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ShiftbossError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Aborted",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "Unimplemented",
    "error_for_code",
]


class ShiftbossError(Exception):
    """Base of every shiftboss error; `code` is the gRPC status code's name."""

    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, *, field: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = list(details or [])

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ShiftbossError):
    code = "INVALID_ARGUMENT"


class NotFound(ShiftbossError):
    code = "NOT_FOUND"


class AlreadyExists(ShiftbossError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(ShiftbossError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(ShiftbossError):
    code = "PERMISSION_DENIED"


class Unauthenticated(ShiftbossError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(ShiftbossError):
    code = "RESOURCE_EXHAUSTED"


class Aborted(ShiftbossError):
    code = "ABORTED"


class Unavailable(ShiftbossError):
    code = "UNAVAILABLE"


class DeadlineExceeded(ShiftbossError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(ShiftbossError):
    code = "CANCELLED"


class Internal(ShiftbossError):
    code = "INTERNAL"


class Unimplemented(ShiftbossError):
    code = "UNIMPLEMENTED"


_BY_CODE: dict[str, type[ShiftbossError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
        Unimplemented,
    )
}


def error_for_code(code: str, message: str) -> ShiftbossError:
    """The error class for a gRPC status code name, carrying `message`."""
    return _BY_CODE.get(code, ShiftbossError)(message)
