"""Settings in one place: `SHIFTBOSS_*` environment variables over a profile file.

The profile is TOML at `$SHIFTBOSS_HOME/profile.toml` (default `~/.shiftboss/profile.toml`)
with the same keys in lower case and without the prefix, e.g. `api_address = "..."`.
The environment wins over the profile; the profile wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Settings", "load_settings"]

_PREFIX = "SHIFTBOSS_"


def _default_home() -> str:
    return str(Path.home() / ".shiftboss")


@dataclass(slots=True, frozen=True)
class Settings:
    #: Folder for the embedded database and the profile file.
    home: str = field(default_factory=_default_home)
    #: Address the CLI, the SDK and workers connect to.
    api_address: str = "127.0.0.1:4300"
    #: Interface and port `shiftboss server start` listens on.
    host: str = "127.0.0.1"
    port: int = 4300
    #: Shared database URL; empty means an SQLite file in `home`.
    database_url: str = ""
    #: Per-service database URLs; empty means the shared one.
    pools_database_url: str = ""
    templates_database_url: str = ""
    heartbeats_database_url: str = ""
    scheduler_database_url: str = ""
    keys_database_url: str = ""
    #: Where each service is reached when it runs in another process; empty means this process.
    pools_address: str = ""
    templates_address: str = ""
    heartbeats_address: str = ""
    scheduler_address: str = ""
    keys_address: str = ""
    #: Largest gRPC message sent or accepted, in bytes (templates and log batches can be large).
    max_message_bytes: int = 16 * 1024 * 1024
    #: Serialized size limit of one document (parameters, job variables, a template), in bytes.
    max_document_bytes: int = 1024 * 1024
    #: Messages per second one worker stream may send (a burst of twice that is allowed).
    stream_messages_per_second: float = 5000.0
    #: Seconds a worker stream may take to send its Hello before the server ends it.
    hello_timeout_seconds: float = 10.0
    #: Seconds a connection may carry no call before the server closes it.
    idle_connection_seconds: float = 300.0
    #: Require an API key on every call (`server start --auth`).
    auth: bool = False
    #: The API key the CLI, the SDK and workers present.
    api_key: str = ""
    #: Shared secret the mesh's services present to each other; needed with --auth when
    #: they run in separate processes (one process makes its own).
    mesh_token: str = ""
    #: The scheduler's key (32 bytes, URL-safe base64): signs run tokens and encrypts secret
    #: job variables; empty: `secret.key` in home, made on first start.
    secret_key: str = ""
    #: Seconds a service may reuse a key's identity before asking KeyService again.
    auth_cache_seconds: float = 5.0
    #: Server certificate and private key (PEM): with both, the server speaks only TLS.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: CA bundle (PEM) that client certificates must chain to: mutual TLS.
    tls_client_ca_file: str = ""
    #: CA bundle (PEM) clients verify the server with; set, clients speak TLS.
    tls_ca_file: str = ""
    #: Client certificate and key (PEM) presented to a server that asks for one.
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    #: Host name to verify in the server's certificate, when it differs from the address.
    tls_server_name: str = ""
    #: Serve on a non-loopback address with neither auth nor TLS (`server start --insecure`).
    insecure: bool = False
    #: Deadline of one SDK call, in seconds.
    request_timeout: float = 30.0
    #: Seconds the SDK keeps trying to create a run while the server is unavailable (a
    #: restart, a database outage); the call's idempotency key makes every try the same run.
    create_retry_seconds: float = 20.0
    #: Seconds between worker heartbeats; a worker missing 3 is OFFLINE.
    heartbeat_seconds: float = 30.0
    #: Seconds after its scheduled start before a SCHEDULED run is shown LATE.
    late_seconds: float = 15.0
    #: Default prefetch of a worker, in seconds.
    prefetch_seconds: float = 10.0
    #: Seconds a dispatched run may stay un-acknowledged before it is SCHEDULED again.
    lease_seconds: float = 30.0
    #: Several servers on one PostgreSQL (replicas): seconds a replica's ownership of its
    #: work pools lasts unless renewed (every quarter of it). Another replica takes the pools
    #: of one that died this long after its last renewal: the failover time, plus a tick.
    replica_ttl_seconds: float = 3.0
    #: Where other replicas and workers reach this server (host:port); empty: the address it
    #: listens on, with this host's name when it listens on every interface.
    advertise_address: str = ""
    #: Runs each schedule keeps ahead (Prefect's rule): at least `schedule_min_runs` and
    #: until `schedule_horizon_seconds` from now, at most `schedule_max_runs` and never past
    #: `schedule_max_seconds`.
    schedule_horizon_seconds: float = 3600.0
    schedule_min_runs: int = 3
    schedule_max_runs: int = 100
    schedule_max_seconds: float = 8_640_000.0
    #: Seconds a stopping server waits for in-flight calls.
    shutdown_grace_seconds: float = 5.0
    #: Seconds a stopping worker lets its runs finish before it kills them.
    worker_grace_seconds: float = 30.0
    #: Seconds a starting worker keeps trying to reach the server before it gives up.
    worker_connect_timeout: float = 60.0
    #: Where `worker start --with-healthcheck` serves GET /health.
    worker_healthcheck_host: str = "0.0.0.0"
    worker_healthcheck_port: int = 8080
    #: Seconds the stream may stay down before the health check turns unhealthy.
    worker_healthcheck_down_seconds: float = 90.0
    #: Telemetry: spans and metrics go over OTLP when the standard OTEL_EXPORTER_OTLP_*
    #: variables name an endpoint; this prints them on stderr as well (or alone).
    telemetry_console: bool = False
    #: Share of traces the server and workers sample, 0 to 1, parent-based (a call whose
    #: caller sampled it is sampled); empty: OTEL_TRACES_SAMPLER decides (default: all).
    telemetry_sample_ratio: str = ""
    #: `text`, or `json`: one JSON object a line, with the current trace_id and span_id.
    log_format: str = "text"

    def database_url_for(self, service: str) -> str:
        """The database URL of one service: its own, else the shared one, else SQLite in home."""
        own = getattr(self, f"{service}_database_url", "")
        if own:
            return own
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.home) / 'shiftboss.db'}"

    def address_for(self, service: str) -> str:
        """Where another service is reached; empty means it runs in this process."""
        return getattr(self, f"{service}_address", "")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(kind: Any, raw: Any, name: str) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            return str(raw).lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise ValueError(f"setting {name}: {raw!r} is not a valid {kind}") from None
    return str(raw)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the profile file and `SHIFTBOSS_*` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    home = env.get(_PREFIX + "HOME") or _default_home()
    values: dict[str, Any] = {"home": home}
    profile = Path(home) / "profile.toml"
    if profile.is_file():
        with profile.open("rb") as fh:
            values.update({k.lower(): v for k, v in tomllib.load(fh).items()})
    for f in dataclasses.fields(Settings):
        raw = env.get(_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = raw
    known = {f.name: f.type for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown settings in {profile}: {', '.join(unknown)}")
    typed = {k: _coerce(known[k], v, _PREFIX + k.upper()) for k, v in values.items()}
    typed.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**typed)
