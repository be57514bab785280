"""HeartbeatService's own checks on what the scheduler forwards from workers."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from grpc import aio

from shiftboss import errors
from shiftboss._wire import to_timestamp
from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.v1 import heartbeats_pb2, heartbeats_pb2_grpc


@pytest.mark.parametrize("interval", [math.nan, math.inf, -1.0, 0.0, 1e300])
async def test_a_beat_whose_interval_is_not_a_usable_number_of_seconds_is_invalid_argument(mesh: Mesh, interval: float) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        stub = heartbeats_pb2_grpc.HeartbeatServiceStub(channel)
        beat = heartbeats_pb2.WorkerBeat(name="w1", pool="etl", heartbeat_seconds=interval)
        with pytest.raises(aio.AioRpcError) as raised:
            await stub.Beat(heartbeats_pb2.BeatRequest(beats=[beat]), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # NaN and infinity are refused for any request, naming the field; the rest by HeartbeatService.
        assert re.match(r"beats(\[0\])?\.heartbeat_seconds: must be a (positive|finite) number", raised.value.details())
        beat.heartbeat_seconds = 30
        await stub.Beat(heartbeats_pb2.BeatRequest(beats=[beat]), timeout=10)


async def test_prefect_workers_are_listed_latest_heartbeat_first_and_an_offline_one_can_be_deleted(mesh: Mesh, client: AsyncClient) -> None:
    now = datetime.now(timezone.utc)
    beats = [
        heartbeats_pb2.WorkerBeat(name="early", pool="etl", heartbeat_seconds=30, at=to_timestamp(now - timedelta(seconds=60))),
        heartbeats_pb2.WorkerBeat(name="early", pool="etl", heartbeat_seconds=30, at=to_timestamp(now - timedelta(seconds=59)), gone=True),
        heartbeats_pb2.WorkerBeat(name="late", pool="etl", heartbeat_seconds=30, at=to_timestamp(now)),
        heartbeats_pb2.WorkerBeat(name="middle", pool="etl", heartbeat_seconds=30, at=to_timestamp(now - timedelta(seconds=5))),
    ]
    async with aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        stub = heartbeats_pb2_grpc.HeartbeatServiceStub(channel)
        for beat in beats:
            await stub.Beat(heartbeats_pb2.BeatRequest(beats=[beat]), timeout=10)
    assert [w.name for w in (await client.list_workers("etl")).workers] == ["late", "middle", "early"]
    assert [w.name for w in (await client.list_workers("etl", limit=2, offset=1)).workers] == ["middle", "early"]
    with pytest.raises(errors.InvalidArgument, match="offset: must not be negative, got -1"):
        await client.list_workers("etl", offset=-1)
    with pytest.raises(errors.FailedPrecondition, match="worker 'late' of work pool 'etl' is ONLINE; stop it first"):
        await client.delete_worker("late", "etl")
    await client.delete_worker("early", "etl")
    assert [w.name for w in (await client.list_workers("etl")).workers] == ["late", "middle"]
    with pytest.raises(errors.NotFound, match="worker 'early' not found in work pool 'etl'"):
        await client.delete_worker("early", "etl")
