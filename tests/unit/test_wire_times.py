"""Timestamps to moments and back: the same as protobuf's own conversions, and the same
refusal of a Timestamp outside its range (a worker's report or heartbeat may carry one)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from shiftboss._wire import from_timestamp, to_timestamp

MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-7, minutes=-30))])
)


@given(MOMENTS)
def test_a_moment_becomes_the_timestamp_protobuf_makes(moment: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert to_timestamp(moment) == expected
    assert to_timestamp(moment.replace(tzinfo=None)) == to_timestamp(moment.replace(tzinfo=timezone.utc))


@given(st.integers(-62_135_596_800, 253_402_300_799), st.integers(0, 999_999_999))
def test_a_timestamp_becomes_the_moment_protobuf_reads(seconds: int, nanos: int) -> None:
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    assert from_timestamp(stamp) == stamp.ToDatetime(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(253_402_300_800, 0), (-62_135_596_801, 0), (10**15, 0), (0, 1_000_000_000), (0, -1)]
)
def test_a_timestamp_out_of_range_is_refused(seconds: int, nanos: int) -> None:
    with pytest.raises(ValueError, match="not a valid Timestamp"):
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos))
