"""HeartbeatService's own checks on what the scheduler forwards from workers."""

from __future__ import annotations

import math
import re

import grpc
import pytest
from grpc import aio

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
