"""Malformed and oversized requests against every RPC of a real server process: each is
answered with a precise status (never UNKNOWN or INTERNAL), the server keeps serving,
and nothing is half-written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.struct_pb2 import Struct
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftboss.client import Client
from shiftboss.v1 import heartbeats_pb2, keys_pb2, pools_pb2, scheduler_pb2, templates_pb2
from tests.e2e.conftest import ServerProcess, base_env

MODULES = (pools_pb2, templates_pb2, heartbeats_pb2, scheduler_pb2, keys_pb2)
REFUSED_AS_BUGS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}

names = st.sampled_from(["etl", "default", "ml", "", " ", "a/b", "x" * 300, "ünï", "nightly"])
text = st.one_of(names, st.text(max_size=40), st.just("y" * 70_000))
json_leaf = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
}


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return text
    if field.type in INT_RANGES:
        low, high = INT_RANGES[field.type]
        return st.one_of(st.integers(-3, 12), st.integers(low, high))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(0, 12)  # open enums: unknown numbers reach the server too
    return st.none()


def message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    if descriptor.full_name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=12), json_value, max_size=4).map(lambda d: _struct(d))
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.integers(-62135596800, 253402300799).map(lambda s: _timestamp(s))
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        if field.message_type is not None:
            if depth >= 2:
                continue
            one = message(field.message_type, depth + 1)
        else:
            one = scalar(field)
        fields[field.name] = st.one_of(st.none(), st.lists(one, max_size=3) if field.is_repeated else one)
    return st.fixed_dictionaries(fields).map(lambda values: _build(descriptor, values))


def _struct(data: dict[str, Any]) -> Struct:
    value = Struct()
    value.update(data)
    return value


def _timestamp(seconds: int) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=seconds)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Any:
    built = descriptor._concrete_class()
    for name, value in values.items():
        if value is None:
            continue
        field = descriptor.fields_by_name[name]
        if field.is_repeated:
            target = getattr(built, name)
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            getattr(built, name).CopyFrom(value)
        else:
            setattr(built, name, value)
    return built


def unary_methods() -> list[tuple[str, Any]]:
    return [
        (f"/{service.full_name}/{method.name}", method)
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming
    ]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, grpc.Channel]]:
    home = tmp_path_factory.mktemp("fuzz-home")
    server = ServerProcess(home, base_env(home, SHIFTBOSS_MAX_DOCUMENT_BYTES="4096")).start()
    channel = grpc.insecure_channel(server.address)
    try:
        yield server, channel
    finally:
        channel.close()
        server.stop()


def call(channel: grpc.Channel, path: str, method: Any, request: Any) -> grpc.StatusCode:
    reply_class = method.output_type._concrete_class
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=type(request).SerializeToString, response_deserializer=reply_class.FromString)
            for _ in stream(request, timeout=1):
                pass
        else:
            unary = channel.unary_unary(path, request_serializer=type(request).SerializeToString, response_deserializer=reply_class.FromString)
            unary(request, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
            return grpc.StatusCode.OK  # a followed stream that stayed open
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("path", "method"), unary_methods(), ids=lambda v: v if isinstance(v, str) else "")
def test_random_requests_get_precise_answers(fuzzed: tuple[ServerProcess, grpc.Channel], path: str, method: Any) -> None:
    _, channel = fuzzed

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(message(method.input_type))
    def check(request: Any) -> None:
        code = call(channel, path, method, request)
        assert code not in REFUSED_AS_BUGS, f"{path} answered {code.name} to {request}"

    check()


@given(st.binary(min_size=1, max_size=64))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_garbage_bytes_are_invalid_argument_or_read_as_a_message(fuzzed: tuple[ServerProcess, grpc.Channel], data: bytes) -> None:
    _, channel = fuzzed
    for path in ("/shiftboss.v1.PoolService/CreateWorkPool", "/shiftboss.v1.SchedulerService/CreateFlowRun"):
        raw = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            raw(data, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() not in REFUSED_AS_BUGS, f"{path} answered {exc.code().name}: {exc.details()}"


def test_after_the_fuzz_the_server_serves_and_nothing_is_half_written(fuzzed: tuple[ServerProcess, grpc.Channel]) -> None:
    server, channel = fuzzed
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    with Client(server.address, timeout=10) as client:
        pools = {pool.name: pool for pool in client.list_work_pools().work_pools}
        for name in pools:
            queues = [queue.name for queue in client.list_work_queues(name).work_queues]
            assert "default" in queues, f"pool {name!r} has no default queue: {queues}"
        for deployment in client.list_deployments().deployments:
            assert deployment.pool in pools, f"deployment {deployment.name!r} names a missing pool {deployment.pool!r}"
        deployments = {d.name for d in client.list_deployments().deployments}
        for run in client.list_flow_runs().flow_runs:
            assert run.pool in pools, f"run {run.id} names a missing pool {run.pool!r}"
            assert not run.deployment or run.deployment in deployments or run.state in (5, 6, 7, 9)
