"""WrapCache: a method's handler is wrapped once, and a new inner handler is wrapped anew."""

from __future__ import annotations

import grpc

from shiftboss.services.interceptors import WrapCache


async def _behavior(request: object, context: object) -> object:
    return request


def test_a_method_is_wrapped_once_and_again_when_its_handler_changes() -> None:
    built: list[grpc.RpcMethodHandler] = []

    def build(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        built.append(handler)
        return grpc.unary_unary_rpc_method_handler(_behavior)

    cache = WrapCache()
    first, second = grpc.unary_unary_rpc_method_handler(_behavior), grpc.unary_unary_rpc_method_handler(_behavior)
    wrapped = cache.get("/svc/A", first, build)
    assert cache.get("/svc/A", first, build) is wrapped
    assert built == [first]
    rebuilt = cache.get("/svc/A", second, build)  # an interceptor outside that wraps per call
    assert rebuilt is not wrapped and built == [first, second]
    assert cache.get("/svc/B", first, build) is not wrapped  # per method
    assert len(cache._entries) == 2  # one entry per method, however many inner handlers came
