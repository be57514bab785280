"""Every gRPC channel shiftboss opens (SDK, CLI, workers, and services calling each other)
is made here, so transport security, credentials and client interceptors are decided in
one place."""

from __future__ import annotations

import json
from typing import Any

import grpc
from grpc import aio

from shiftboss import telemetry
from shiftboss.errors import InvalidArgument
from shiftboss.settings import Settings

__all__ = ["call_metadata", "channel_credentials", "channel_options", "open_channel", "open_aio_channel", "read_pem"]

_RETRY = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    extra = [("grpc.ssl_target_name_override", settings.tls_server_name)] if settings.tls_server_name else []
    return extra + [
        ("grpc.service_config", json.dumps(_RETRY)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # A server that comes back is found within a second or two, not after gRPC's
        # default backoff (up to two minutes), so a worker's outage ends with the server's.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


def read_pem(path: str, setting: str) -> bytes:
    """A certificate or key file named by a setting; a file that cannot be read names the setting."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidArgument(f"SHIFTBOSS_{setting.upper()}: cannot read {path}: {exc.strerror}", field=setting) from None


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials when a CA bundle is set (with a client certificate for mutual TLS)."""
    if not settings.tls_ca_file:
        return None
    client_key = client_chain = None
    if settings.tls_client_cert_file:
        client_chain = read_pem(settings.tls_client_cert_file, "tls_client_cert_file")
        client_key = read_pem(settings.tls_client_key_file, "tls_client_key_file")
    return grpc.ssl_channel_credentials(read_pem(settings.tls_ca_file, "tls_ca_file"), client_key, client_chain)


def call_metadata(settings: Settings, api_key: str | None = None) -> tuple[tuple[str, str], ...]:
    """What every call carries: the API key, when there is one."""
    key = settings.api_key if api_key is None else api_key
    return (("authorization", f"Bearer {key}"),) if key else ()


def open_channel(address: str, settings: Settings) -> grpc.Channel:
    """A blocking channel to `address`."""
    credentials = channel_credentials(settings)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=channel_options(settings))
    else:
        channel = grpc.secure_channel(address, credentials, options=channel_options(settings))
    interceptors = telemetry.client_interceptors(telemetry.active())
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


def open_aio_channel(address: str, settings: Settings, *, local: bool = False) -> aio.Channel:
    """An asyncio channel to `address`; `local`: to a server of this very process."""
    credentials = channel_credentials(settings)
    if credentials is None:
        channel = aio.insecure_channel(address, options=channel_options(settings))
    else:
        channel = aio.secure_channel(address, credentials, options=channel_options(settings))
    return telemetry.traced_aio_channel(channel, telemetry.active(), local=local)
