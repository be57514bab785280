"""The mesh launcher: one gRPC server hosting some or all of the services.

Services never import each other; each reaches the others through `Peers`, which hands
out gRPC stubs. When a peer runs in this process the stub talks to this very server over
loopback, so splitting the services across processes changes no code path.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shiftboss import telemetry
from shiftboss.channels import open_aio_channel, read_pem
from shiftboss.errors import error_for_code
from shiftboss.services.absent import AbsentServices
from shiftboss.services.auth import MESH_HEADER, AuthInterceptor, Authenticator
from shiftboss.services.db import Database, has_migrations, lock_sqlite_for_one_server, open_database, release_database
from shiftboss.services.interceptors import ErrorInterceptor, FaultInterceptor
from shiftboss.services.limits import DocumentLimitInterceptor
from shiftboss.services.tracing import server_interceptors
from shiftboss.settings import Settings
from shiftboss.v1 import keys_pb2_grpc

log = logging.getLogger("shiftboss.server")

#: Every service, in start order: a service may call those before it while starting.
SERVICE_NAMES = ("keys", "templates", "pools", "heartbeats", "scheduler")


class Service(Protocol):
    """What a service package's `build(mesh)` returns."""

    name: str
    full_name: str

    def register(self, server: aio.Server) -> None: ...
    async def start(self) -> None: ...
    def closing(self) -> None:
        """End long-lived streams so the server can stop within its grace period."""
    async def stop(self) -> None: ...


def available_services() -> list[str]:
    found = []
    for name in SERVICE_NAMES:
        try:
            importlib.import_module(f"shiftboss.services.{name}.service")
        except ModuleNotFoundError:
            continue
        found.append(name)
    return found


@dataclass
class Peers:
    """gRPC stubs to the other services, wherever they run."""

    settings: Settings
    local_address: str = ""
    local: set[str] = field(default_factory=set)
    #: Sent with every call: the mesh's shared token when the server runs with auth.
    metadata: tuple[tuple[str, str], ...] = ()
    _channels: dict[str, aio.Channel] = field(default_factory=dict)

    def address(self, service: str) -> str:
        if service in self.local:
            return self.local_address
        remote = self.settings.address_for(service)
        return remote or self.settings.api_address

    def channel(self, service: str) -> aio.Channel:
        target = self.address(service)
        channel = self._channels.get(target)
        if channel is None:
            local = target == self.local_address
            channel = self._channels[target] = open_aio_channel(target, self.settings, local=local)
        return channel

    def stub(self, service: str, stub_class: Callable[[aio.Channel], Any]) -> Any:
        return stub_class(self.channel(service))

    def stub_at(self, address: str, stub_class: Callable[[aio.Channel], Any]) -> Any:
        """A stub to the same services in another process at `address` (another scheduler
        replica, see scheduler/ownership.py)."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_aio_channel(address, self.settings, local=address == self.local_address)
        return stub_class(channel)

    async def call(self, method: Callable[..., Any], request: Any, timeout: float | None = None) -> Any:
        """Call a peer's RPC; its failure comes back as the same typed error."""
        try:
            return await method(request, timeout=timeout or self.settings.request_timeout, metadata=self.metadata)
        except aio.AioRpcError as exc:
            raise error_for_code(exc.code().name, exc.details() or exc.code().name) from None

    def stream(self, method: Callable[..., Any], request: Any) -> Any:
        """Open a peer's server stream (no deadline: it lives as long as the caller)."""
        return method(request, metadata=self.metadata)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_settings(settings: Settings) -> Settings:
    """Settings for calls to the other services: a TLS server's own certificate vouches for it
    to its in-process peers unless a CA bundle and client certificate are given."""
    if not settings.tls_cert_file:
        return settings
    return settings.replace(
        tls_ca_file=settings.tls_ca_file or settings.tls_cert_file,
        tls_client_cert_file=settings.tls_client_cert_file or settings.tls_cert_file,
        tls_client_key_file=settings.tls_client_key_file or settings.tls_key_file,
    )


class GenericRouting(aio.Server):
    """The server as the generated `add_*_to_server` functions see it: their methods are
    routed by their generic handlers alone. grpc.aio keeps one pending accept per
    registered method and waits on all of them for every call it takes (67 methods here),
    where the generic route is one accept and a dictionary lookup."""

    def __init__(self, server: aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        pass  # the generic handler added with them routes these methods

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self._server.wait_for_termination(timeout)


class Mesh:
    """Start, serve and stop a set of services on one port."""

    def __init__(self, settings: Settings, services: list[str] | None = None) -> None:
        self.settings = settings
        unknown = sorted(set(services or []) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(f"unknown service {', '.join(unknown)}; one of {', '.join(SERVICE_NAMES)}")
        wanted = services or available_services()
        self.names = [n for n in SERVICE_NAMES if n in wanted]
        self.peers = Peers(peer_settings(settings), local=set(self.names))
        self.services: list[Service] = []
        self.server: aio.Server | None = None
        self.port = 0
        #: Tracing and metrics, or None when off (then nothing is installed).
        self.telemetry = telemetry.active()
        self._health: health.aio.HealthServicer | None = None
        self._readiness: asyncio.Task[None] | None = None
        #: The lock that keeps a second server off this one's SQLite file (see db.py).
        self._sqlite_lock: Any = None
        self.authenticator: Authenticator | None = None
        if settings.auth:
            token = settings.mesh_token
            if not token:
                if not self.whole:
                    raise ValueError(
                        "SHIFTBOSS_MESH_TOKEN must be set (the same on every process) when services run apart with auth"
                    )
                token = secrets.token_urlsafe(32)
            self.peers.metadata = ((MESH_HEADER, token),)
            self.authenticator = Authenticator(
                token, settings.auth_cache_seconds, self.peers.call, lambda: self.peers.stub("keys", keys_pb2_grpc.KeyServiceStub)
            )

    @property
    def whole(self) -> bool:
        """Whether every service runs in this process."""
        return set(self.names) == set(SERVICE_NAMES) and not any(self.settings.address_for(n) for n in SERVICE_NAMES)

    def forget_identity(self, key_id: str) -> None:
        """A revoked key stops working in this process at once."""
        if self.authenticator is not None:
            self.authenticator.forget(key_id)

    def _interceptors(self) -> list[aio.ServerInterceptor]:
        # With telemetry on, the tracing interceptor is the error interceptor too, first: its span
        # records the status the others end the call with.
        interceptors: list[aio.ServerInterceptor] = server_interceptors(self.telemetry) or [ErrorInterceptor()]
        if self.authenticator is not None:
            interceptors.append(AuthInterceptor(self.authenticator))
        interceptors.append(DocumentLimitInterceptor(self.settings.max_document_bytes))
        interceptors.append(FaultInterceptor())
        return interceptors

    def _listen(self, server: aio.Server, address: str) -> int:
        settings = self.settings
        if not settings.tls_cert_file:
            return server.add_insecure_port(address)
        credentials = grpc.ssl_server_credentials(
            [(read_pem(settings.tls_key_file, "tls_key_file"), read_pem(settings.tls_cert_file, "tls_cert_file"))],
            root_certificates=read_pem(settings.tls_client_ca_file, "tls_client_ca_file") if settings.tls_client_ca_file else None,
            require_client_auth=bool(settings.tls_client_ca_file),
        )
        return server.add_secure_port(address, credentials)

    def _refuse_exposed(self, host: str) -> None:
        settings = self.settings
        # TLS alone encrypts but lets anyone in: only keys or client certificates guard the door.
        if not is_loopback(host) and settings.auth and not settings.tls_cert_file:
            log.warning("serving %s with --auth but without TLS: API keys cross the network in clear text; "
                        "set SHIFTBOSS_TLS_CERT_FILE and SHIFTBOSS_TLS_KEY_FILE", host)
        if is_loopback(host) or settings.auth or settings.tls_client_ca_file:
            return
        if not settings.insecure:
            raise OSError(
                f"refusing to serve {host} with neither auth nor client certificates: anyone who reaches it could run "
                "code on your workers; use --auth (with SHIFTBOSS_TLS_CERT_FILE for encryption) or "
                "SHIFTBOSS_TLS_CLIENT_CA_FILE, or --insecure to serve it anyway"
            )
        log.warning("serving %s with neither auth nor client certificates (--insecure): anyone who reaches it can use it", host)

    async def migrate(self) -> list[Database]:
        """Bring every database of this process's services to its head revision, before the
        server listens: a database it cannot bring there (NotAtHead) stops the start, rather
        than a server that answers every call with a missing table. The databases are
        returned open, so the services that open them next share them (and their upgrade)."""
        opened: list[Database] = []
        try:
            for name in self.names:
                if has_migrations(name):
                    opened.append(open_database(self.settings.database_url_for(name)))
                    await opened[-1].upgrade(name)
        except BaseException:
            for db in opened:
                await release_database(db)
            raise
        return opened

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        host = host or self.settings.host
        port = self.settings.port if port is None else port
        self._refuse_exposed(host)
        if "scheduler" in self.names and self._sqlite_lock is None:
            # Before anything is migrated or listens: a second scheduler on one SQLite file
            # would enforce limits and dispatch on its own (DatabaseInUse, one line).
            self._sqlite_lock = lock_sqlite_for_one_server(self.settings.database_url_for("scheduler"))
        migrated = await self.migrate()
        try:
            return await self._serve(host, port)
        finally:
            for db in migrated:
                await release_database(db)

    async def _serve(self, host: str, port: int) -> int:
        self.server = aio.server(
            interceptors=self._interceptors(),
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
                # A connection that carries no call is closed; an open worker stream counts as a call.
                ("grpc.max_connection_idle_ms", int(self.settings.idle_connection_seconds * 1000)),
            ],
        )
        registering = GenericRouting(self.server)
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6 goes in brackets
        try:
            self.port = self._listen(self.server, f"{shown}:{port}")
        except RuntimeError as exc:  # grpc raises rather than returning 0 on some versions
            raise OSError(f"cannot listen on {shown}:{port}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {shown}:{port}")
        loopback = "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else shown
        self.peers.local_address = f"{loopback}:{self.port}"
        for name in self.names:
            module = importlib.import_module(f"shiftboss.services.{name}.service")
            service: Service = module.build(self)
            service.register(registering)
            self.services.append(service)
            if self.authenticator is not None and getattr(service, "seal", None) is not None:
                self.authenticator.seal = service.seal  # the scheduler's: run tokens are checked here
        self.server.add_generic_rpc_handlers((AbsentServices(self.names, f"{shown}:{self.port}", self.settings),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registering)
        full_names = [s.full_name for s in self.services]
        reflection.enable_server_reflection([*full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], registering)
        for full in ["", *full_names]:  # until each service is ready (see _report_ready)
            await health_servicer.set(full, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health = health_servicer
        await self.server.start()
        for service in self.services:
            await service.start()
        if all(getattr(service, "ready", None) is None or service.ready.is_set() for service in self.services):
            await self._report_ready(health_servicer)
        else:  # the scheduler waited long for its peers: SERVING once it has them
            self._readiness = asyncio.create_task(self._report_ready(health_servicer))
        log.info("serving %s on %s:%d", ", ".join(self.names), host, self.port)
        return self.port

    async def _report_ready(self, health_servicer: health.aio.HealthServicer) -> None:
        """Each service SERVING once it is ready (the scheduler when it has loaded its pools
        and runs, which needs its peers), and the server as a whole once all are; a probe
        sees NOT_SERVING before, and again from the moment the server starts stopping."""
        for service in self.services:
            ready = getattr(service, "ready", None)
            if ready is not None:
                await ready.wait()
            await health_servicer.set(service.full_name, health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self._readiness is not None:
            self._readiness.cancel()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        for service in reversed(self.services):
            service.closing()
        if self.server is not None:
            await self.server.stop(grace)
        for service in reversed(self.services):
            await service.stop()
        await self.peers.close()
        if self._sqlite_lock is not None:
            self._sqlite_lock.close()
            self._sqlite_lock = None

    async def serve_until_signalled(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully. `ready` is called once the
        signals are handled: whoever reads that the server is up may stop it cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready()
        await stop.wait()
        log.info("stopping")
        await self.stop()
