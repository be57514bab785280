"""KeyService's gRPC servicer: API keys and who a key is."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from grpc import aio

from shiftboss.services.db import open_database, release_database
from shiftboss.services.keys import domain
from shiftboss.services.keys.wire import identity_to_proto, key_to_proto, role_from_proto
from shiftboss.settings import Settings
from shiftboss.v1 import keys_pb2, keys_pb2_grpc


def _now() -> datetime:
    return datetime.now(timezone.utc)


class KeyService(keys_pb2_grpc.KeyServiceServicer):
    name = "keys"
    full_name = keys_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.db = open_database(mesh.settings.database_url_for(self.name))

    def register(self, server: aio.Server) -> None:
        keys_pb2_grpc.add_KeyServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.db.upgrade(self.name)

    def closing(self) -> None:
        pass

    async def stop(self) -> None:
        await release_database(self.db)

    async def CreateApiKey(self, request: keys_pb2.CreateApiKeyRequest, context: Any) -> keys_pb2.ApiKey:
        expires_in = request.expires_in if request.HasField("expires_in") else None
        async with self.db.transaction() as session:
            row, key = await domain.create_key(
                session, request.name, role_from_proto(request.role), request.pool, expires_in, _now()
            )
            return key_to_proto(row, key)

    async def ListApiKeys(self, request: keys_pb2.ListApiKeysRequest, context: Any) -> keys_pb2.ListApiKeysResponse:
        async with self.db.reading() as session:
            return keys_pb2.ListApiKeysResponse(api_keys=[key_to_proto(row) for row in await domain.list_keys(session)])

    async def RevokeApiKey(self, request: keys_pb2.ApiKeyRef, context: Any) -> keys_pb2.ApiKey:
        async with self.db.transaction() as session:
            row = await domain.revoke_key(session, request.name, _now())
            reply = key_to_proto(row)
        # Identities this process has cached for the key end now; other processes' within
        # SHIFTBOSS_AUTH_CACHE_SECONDS.
        self.mesh.forget_identity(row.id)
        return reply

    async def Authenticate(self, request: keys_pb2.AuthenticateRequest, context: Any) -> keys_pb2.Identity:
        async with self.db.reading() as session:
            return identity_to_proto(await domain.authenticate(session, request.key, _now()))


async def create_admin_key(settings: Settings, name: str, expires_in_days: float | None = None) -> str:
    """The first admin key, written straight to KeyService's database; returns the key."""
    db = open_database(settings.database_url_for(KeyService.name))
    try:
        await db.upgrade(KeyService.name)
        async with db.transaction() as session:
            _, key = await domain.create_key(session, name, "ADMIN", "", expires_in_days, _now())
        return key
    finally:
        await release_database(db)


def build(mesh: Any) -> KeyService:
    return KeyService(mesh)
