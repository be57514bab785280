"""Authentication and roles: who may call which RPC when the server runs with `--auth`.

Every RPC declares its access in the contract (`option (access)` in proto/); this module
reads those options, finds who the caller's key is through KeyService (remembered for
`auth_cache_seconds`), and refuses with UNAUTHENTICATED (no key, a bad one, or more than
one) or PERMISSION_DENIED (a key outside its role or pool). The mesh's own services
present a shared token instead of a key.

The key is checked when the call arrives, before gRPC reads its request: a refused call
is answered without its body ever being read, so requests without a good key cost the
server no memory however large they are.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import grpc
from grpc import aio

from shiftboss.errors import PermissionDenied, ShiftbossError, Unauthenticated, Unavailable
from shiftboss.services.interceptors import WrapCache, rewrap
from shiftboss.services.sealing import is_run_token
from shiftboss.v1 import common_pb2, heartbeats_pb2, keys_pb2, keys_pb2_grpc, pools_pb2, scheduler_pb2, templates_pb2

__all__ = [
    "AuthInterceptor", "Authenticator", "MESH_HEADER", "method_access", "on_revoked", "require_pool", "run_scope", "worker_key_name",
]

log = logging.getLogger("shiftboss.server")

#: Metadata that carries the mesh's shared token between its services.
MESH_HEADER = "x-shiftboss-mesh"
_ADMIN, _OPERATOR, _WORKER, _MESH = (
    common_pb2.ACCESS_ADMIN,
    common_pb2.ACCESS_OPERATOR,
    common_pb2.ACCESS_WORKER,
    common_pb2.ACCESS_MESH,
)
_NEEDS = {_ADMIN: "an admin key", _OPERATOR: "an operator or admin key", _WORKER: "a worker or admin key"}
#: Health checks answer anyone (probes carry no key); reflection needs an operator key.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
_REFLECTION_PREFIX = "/grpc.reflection."
_MAX_CACHED = 10_000
#: An open stream's key is checked again at most this often, however short the cache.
MIN_RECHECK_SECONDS = 1.0

_identity: contextvars.ContextVar[keys_pb2.Identity | None] = contextvars.ContextVar("shiftboss_identity", default=None)
_enders: contextvars.ContextVar[list[Callable[[Unauthenticated], None]] | None] = contextvars.ContextVar(
    "shiftboss_stream_enders", default=None
)
#: The caller checked as its call arrived, for the call's handler: (method, identity, key).
_arrived: contextvars.ContextVar[tuple[str, keys_pb2.Identity, str] | None] = contextvars.ContextVar(
    "shiftboss_arrived", default=None
)
_MESH_IDENTITY = keys_pb2.Identity(name="mesh", role=keys_pb2.ADMIN)


def _access_table() -> tuple[dict[str, int], frozenset[str]]:
    """Each RPC's declared access, and the RPCs a run token may call."""
    table, for_runs = {}, set()
    for module in (pools_pb2, templates_pb2, heartbeats_pb2, scheduler_pb2, keys_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                path = f"/{service.full_name}/{method.name}"
                table[path] = options.Extensions[common_pb2.access] or _ADMIN
                if options.Extensions[common_pb2.run_token]:
                    for_runs.add(path)
    return table, frozenset(for_runs)


_ACCESS, _RUN_TOKEN_METHODS = _access_table()
_RUN_TOKEN_NAMES = ", ".join(sorted(m.rsplit("/", 1)[-1] for m in _RUN_TOKEN_METHODS))


def method_access(method: str) -> int:
    """The access an RPC path declares; reflection counts as a read; unknown paths are admin's."""
    if method.startswith(_REFLECTION_PREFIX):
        return _OPERATOR
    return _ACCESS.get(method, _ADMIN)


def require_pool(pool: str) -> None:
    """Refuse a worker key that serves another pool than the one it is bound to."""
    identity = _identity.get()
    if identity is not None and identity.role == keys_pb2.WORKER and identity.pool != pool:
        raise PermissionDenied(
            f"pool: worker key '{identity.name}' is bound to work pool '{identity.pool}' and may not serve '{pool}'",
            field="pool",
        )


def on_revoked(end: Callable[[Unauthenticated], None]) -> None:
    """Have this stream ended by `end` if its key is revoked or expires while it is open."""
    enders = _enders.get()
    if enders is not None:
        enders.append(end)


def run_scope() -> tuple[str, int] | None:
    """(run id, lease) when the caller presents a run token; None for any other caller."""
    identity = _identity.get()
    if identity is not None and identity.role == keys_pb2.RUN:
        return identity.run, identity.lease
    return None


def worker_key_name() -> str | None:
    """The name of the caller's key when it is a worker key; None otherwise."""
    identity = _identity.get()
    if identity is not None and identity.role == keys_pb2.WORKER:
        return identity.name
    return None


class Authenticator:
    """Who a key is, asked of KeyService and remembered for a few seconds."""

    def __init__(self, token: str, cache_seconds: float, call: Callable[[Any, Any], Awaitable[Any]], keys: Callable[[], Any]):
        self.token = token
        self.cache_seconds = cache_seconds
        self._call = call
        self._keys = keys
        self._cache: dict[str, tuple[keys_pb2.Identity, float]] = {}
        #: Checks run tokens (services/sealing.py) where the scheduler runs; None elsewhere.
        self.seal: Any = None

    async def identify(self, key: str) -> keys_pb2.Identity:
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            identity = await self._call(self._keys().Authenticate, keys_pb2.AuthenticateRequest(key=key))
        except Unauthenticated:
            raise
        except ShiftbossError as exc:  # the caller's key is not at fault: say so
            raise Unavailable(f"cannot check the API key: KeyService answered {exc.code}: {exc.message}") from None
        until = now + self.cache_seconds
        if identity.HasField("expires"):
            left = identity.expires.ToDatetime(tzinfo=timezone.utc) - datetime.now(timezone.utc)
            until = min(until, now + left.total_seconds())
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (identity, until)
        return identity

    def forget(self, key_id: str) -> None:
        prefix = f"sb_{key_id}_"
        for key in [k for k in self._cache if k.startswith(prefix)]:
            del self._cache[key]

    async def watch(self, key: str, enders: list[Callable[[Unauthenticated], None]]) -> None:
        """End a stream once its key is revoked or expires, checked again each time the
        remembered identity runs out; the stream's servicer says how (`on_revoked`)."""
        while True:
            await asyncio.sleep(max(self.cache_seconds, MIN_RECHECK_SECONDS))
            try:
                await self.identify(key)
            except Unauthenticated as exc:
                log.info("ending a stream: %s", exc.message)
                for end in enders:
                    end(exc)
                return
            except ShiftbossError:
                continue  # KeyService unreachable: the key is not at fault; keep the stream

    @staticmethod
    def credentials(metadata: Sequence[tuple[str, Any]]) -> tuple[str | None, str | None]:
        """(mesh token, authorization header) of a call, each None when absent; a call
        carrying either twice is refused: which one would count is a guess, and a guess
        let a stream outlive its key."""
        token = header = None
        for name, value in metadata:
            if name == MESH_HEADER:
                if token is not None:
                    raise Unauthenticated(f"more than one {MESH_HEADER} header: send one")
                token = value if isinstance(value, str) else ""
            elif name == "authorization":
                if header is not None:
                    raise Unauthenticated("more than one authorization header: send one 'Bearer <key>'")
                header = value if isinstance(value, str) else ""
        return token, header

    async def check(self, method: str, metadata: Sequence[tuple[str, Any]]) -> tuple[keys_pb2.Identity, str]:
        """The caller's identity and API key ("" for the mesh), if it may call `method`;
        raises Unauthenticated or PermissionDenied."""
        token, header = self.credentials(metadata)
        if token is not None:
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                raise Unauthenticated("invalid mesh token: every service of one mesh must share SHIFTBOSS_MESH_TOKEN")
            return _MESH_IDENTITY, ""
        if not header:
            raise Unauthenticated("missing API key: this server requires one (set SHIFTBOSS_API_KEY)")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <key>'")
        if is_run_token(key):
            return self._run_identity(method, key), ""
        identity = await self.identify(key)
        access = method_access(method)
        name = method.rsplit("/", 1)[-1]
        if access == _MESH:
            raise PermissionDenied(f"{name} is called only by the mesh's own services")
        role = identity.role
        if role == keys_pb2.ADMIN or (role, access) in ((keys_pb2.OPERATOR, _OPERATOR), (keys_pb2.WORKER, _WORKER)):
            return identity, key
        role_name = keys_pb2.Role.Name(role).lower() if role in keys_pb2.Role.values() else str(role)
        raise PermissionDenied(f"API key '{identity.name}' has role {role_name}; {name} needs {_NEEDS.get(access, _NEEDS[_ADMIN])}")


    def _run_identity(self, method: str, token: str) -> keys_pb2.Identity:
        """A run token may call a few RPCs, for its own run (which each checks: run_scope)."""
        if method not in _RUN_TOKEN_METHODS or self.seal is None:
            name = method.rsplit("/", 1)[-1]
            raise PermissionDenied(f"a run token may call only {_RUN_TOKEN_NAMES}, for its own run; not {name}")
        run_id, lease = self.seal.check_run_token(token)
        return keys_pb2.Identity(name=f"run {run_id}", role=keys_pb2.RUN, run=run_id, lease=lease)


class AuthInterceptor(aio.ServerInterceptor):
    """Checks every call's key against the RPC's declared access before the servicer runs."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        # Checked before gRPC reads the request: a refused call's body is never read. The
        # handler runs in this same task, so it finds the result in `_arrived`.
        try:
            identity, key = await self.authenticator.check(method, handler_call_details.invocation_metadata or ())
        except ShiftbossError as exc:
            return _refusal(handler, exc)
        _arrived.set((method, identity, key))
        return self._wrapped.get(method, handler, lambda handler: self._build(method, handler))

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler guarded for `method`; each call's key is read from its own context."""
        authenticator = self.authenticator

        async def caller(context: aio.ServicerContext) -> tuple[keys_pb2.Identity, str]:
            arrived = _arrived.get()
            if arrived is not None and arrived[0] == method:
                _arrived.set(None)
                return arrived[1], arrived[2]
            return await authenticator.check(method, context.invocation_metadata() or ())

        def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def guarded(request: Any, context: aio.ServicerContext) -> Any:
                token = _identity.set((await caller(context))[0])
                try:
                    return await behavior(request, context)
                finally:
                    _identity.reset(token)

            return guarded

        def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
            async def guarded(request: Any, context: aio.ServicerContext) -> Any:
                identity, key = await caller(context)
                token = _identity.set(identity)
                enders: list[Callable[[Unauthenticated], None]] = []
                enders_token = _enders.set(enders)
                watcher = asyncio.ensure_future(authenticator.watch(key, enders)) if key else None
                try:
                    async for reply in behavior(request, context):
                        yield reply
                finally:
                    if watcher is not None:
                        watcher.cancel()
                    _enders.reset(enders_token)
                    _identity.reset(token)

            return guarded

        return rewrap(handler, unary, stream)


def _refusal(handler: grpc.RpcMethodHandler, error: ShiftbossError) -> grpc.RpcMethodHandler:
    """A handler that answers `error` without reading the request: declared as reading a
    stream of requests, so gRPC waits for the handler to ask for one, which it never does."""

    async def refuse_once(requests: Any, context: aio.ServicerContext) -> Any:
        raise error

    async def refuse_stream(requests: Any, context: aio.ServicerContext) -> Any:
        raise error
        yield  # an async generator: answered by a stream

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(refuse_once, handler.request_deserializer, handler.response_serializer)
