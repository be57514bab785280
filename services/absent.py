"""Calls for a shiftboss service that this process does not run.

With the services split across processes, a client pointed at the wrong one would get
gRPC's bare "Method not found!". This handler, consulted after every registered service,
answers instead with UNIMPLEMENTED naming the missing service and the settings that find it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from shiftboss.settings import Settings
from shiftboss.v1 import heartbeats_pb2, keys_pb2, pools_pb2, scheduler_pb2, templates_pb2

__all__ = ["AbsentServices", "SERVICE_FULL_NAMES"]

#: Each service's short name (as `--service` takes it) and its proto name.
SERVICE_FULL_NAMES = {
    "keys": keys_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    "templates": templates_pb2.DESCRIPTOR.services_by_name["TemplateService"].full_name,
    "pools": pools_pb2.DESCRIPTOR.services_by_name["PoolService"].full_name,
    "heartbeats": heartbeats_pb2.DESCRIPTOR.services_by_name["HeartbeatService"].full_name,
    "scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
}


def absence_message(service: str, address: str, settings: Settings) -> str:
    """Why a call for `service` cannot be answered by the server at `address`, and what to set."""
    proto_name = SERVICE_FULL_NAMES[service].rsplit(".", 1)[-1]
    setting = f"SHIFTBOSS_{service.upper()}_ADDRESS"
    elsewhere = settings.address_for(service)
    if elsewhere:
        return (
            f"this server ({address}) does not run {proto_name}; it runs at {elsewhere} (this server's {setting}): "
            "point SHIFTBOSS_API_ADDRESS there"
        )
    return (
        f"this server ({address}) does not run {proto_name}; start it with --service {service}, and point clients at it "
        f"with SHIFTBOSS_API_ADDRESS (and the other services with {setting})"
    )


class AbsentServices(grpc.GenericRpcHandler):
    """Answers every method of the shiftboss services not in `local` with UNIMPLEMENTED."""

    def __init__(self, local: Iterable[str], address: str, settings: Settings) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for service, full_name in SERVICE_FULL_NAMES.items():
            if service not in local:
                self._handlers[full_name] = grpc.stream_stream_rpc_method_handler(_refusal(absence_message(service, address, settings)))

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        # A method path is "/<package>.<Service>/<Method>".
        full_name = handler_call_details.method.split("/")[1] if handler_call_details.method.count("/") == 2 else ""
        return self._handlers.get(full_name)


def _refusal(message: str) -> Any:
    # Streaming both ways so that it fits a call of any shape; it reads nothing.
    async def refuse(requests: Any, context: Any) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield  # pragma: no cover - never reached; makes this an async generator

    return refuse
