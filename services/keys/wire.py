"""KeyService's conversions between rows and messages."""

from __future__ import annotations

from shiftboss._wire import to_timestamp
from shiftboss.services.keys.domain import Identity, as_utc
from shiftboss.services.keys.models import ApiKeyRow
from shiftboss.v1 import keys_pb2


def key_to_proto(row: ApiKeyRow, key: str = "") -> keys_pb2.ApiKey:
    return keys_pb2.ApiKey(
        id=row.id,
        name=row.name,
        role=keys_pb2.Role.Value(row.role),
        pool=row.pool,
        created=to_timestamp(as_utc(row.created)),
        expires=to_timestamp(as_utc(row.expires)),
        revoked=to_timestamp(as_utc(row.revoked)),
        key=key,
    )


def identity_to_proto(identity: Identity) -> keys_pb2.Identity:
    return keys_pb2.Identity(
        name=identity.name, role=keys_pb2.Role.Value(identity.role), pool=identity.pool, expires=to_timestamp(identity.expires)
    )


def role_from_proto(value: int) -> str:
    return keys_pb2.Role.Name(value) if value else ""
