"""Every gRPC channel shiftboss opens (SDK, CLI, workers, and services calling each other)
is made here, so transport security, credentials and client interceptors are decided in
one place."""

from __future__ import annotations

import json
from typing import Any

import grpc
from grpc import aio

from shiftboss.settings import Settings

__all__ = ["channel_options", "open_channel", "open_aio_channel"]

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
    return [
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


def open_channel(address: str, settings: Settings) -> grpc.Channel:
    """A blocking channel to `address`."""
    return grpc.insecure_channel(address, options=channel_options(settings))


def open_aio_channel(address: str, settings: Settings) -> aio.Channel:
    """An asyncio channel to `address`."""
    return aio.insecure_channel(address, options=channel_options(settings))
