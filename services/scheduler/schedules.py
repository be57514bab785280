"""When schedules fire: cron expressions in a timezone, and fixed intervals."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from shiftboss.errors import InvalidArgument

#: Shortest interval a schedule may have.
MIN_INTERVAL_SECONDS = 1.0


def check_schedule(cron: str, tz: str, interval: float) -> None:
    if cron and interval:
        raise InvalidArgument("cron: give a cron expression or an interval, not both", field="cron")
    if cron and not croniter.is_valid(cron):
        raise InvalidArgument(f"cron: {cron!r} is not a valid cron expression", field="cron")
    if interval and (interval < MIN_INTERVAL_SECONDS or not math.isfinite(interval)):
        raise InvalidArgument(f"interval: must be at least {MIN_INTERVAL_SECONDS:g} seconds, got {interval:g}", field="interval")
    zone(tz)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"timezone: unknown timezone {name!r}", field="timezone") from None


def slots(cron: str, tz: str, interval: float, anchor: datetime, start: datetime, end: datetime, limit: int) -> Iterator[datetime]:
    """Fire times in [start, end], at most `limit`, as UTC datetimes."""
    count = 0
    if cron:
        local = start.astimezone(zone(tz))
        it = croniter(cron, local - timedelta(microseconds=1))
        while count < limit:
            moment = it.get_next(datetime).astimezone(timezone.utc)
            if moment > end:
                return
            count += 1
            yield moment
    elif interval:
        step = timedelta(seconds=interval)
        elapsed = (start - anchor).total_seconds()
        k = max(0, math.ceil(elapsed / interval))
        moment = anchor + k * step
        while moment <= end and count < limit:
            count += 1
            yield moment
            moment += step
