"""When schedules fire: cron expressions, intervals from an anchor date, and RRULEs, each
read in its timezone; and how many runs they make ahead (Prefect's scheduler rule)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.rrule import rrulebase, rrulestr

from shiftboss.errors import InvalidArgument

#: Shortest interval a schedule may have.
MIN_INTERVAL_SECONDS = 1.0
#: Longest RRULE text accepted (Prefect's limit).
MAX_RRULE_LENGTH = 6500
#: An RRULE without DTSTART counts from here (Prefect's implicit anchor).
RRULE_ANCHOR = datetime(2020, 1, 1)
#: Intervals of a day or more keep their local clock time across DST changes; shorter
#: ones step in UTC (Prefect's IntervalSchedule).
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Ahead:
    """How many runs a schedule makes ahead (Prefect: min_runs, max_runs,
    min_scheduled_time, max_scheduled_time)."""

    min_runs: int = 3
    max_runs: int = 100
    min_seconds: float = 3600.0
    max_seconds: float = 100 * DAY


def check_schedule(cron: str, tz: str, interval: float, rrule: str = "") -> None:
    given = [name for name, value in (("cron", cron), ("interval", interval), ("rrule", rrule)) if value]
    if len(given) > 1:
        raise InvalidArgument(f"{given[0]}: give one of a cron expression, an interval or an rrule, not {' and '.join(given)}", field=given[0])
    if cron and not croniter.is_valid(cron):
        raise InvalidArgument(f"cron: {cron!r} is not a valid cron expression", field="cron")
    if interval and (interval < MIN_INTERVAL_SECONDS or not math.isfinite(interval)):
        raise InvalidArgument(f"interval: must be at least {MIN_INTERVAL_SECONDS:g} seconds, got {interval:g}", field="interval")
    if rrule:
        parse_rrule(rrule)
    zone(tz)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"timezone: unknown timezone {name!r}", field="timezone") from None


def parse_rrule(text: str) -> rrulebase:
    """The rule, read in wall-clock time: offsets written in it are ignored, and the
    schedule's timezone says where its times are (as Prefect localises them)."""
    if len(text) > MAX_RRULE_LENGTH:
        raise InvalidArgument(f"rrule: {len(text)} characters is over the limit of {MAX_RRULE_LENGTH}", field="rrule")
    try:
        return rrulestr(text, dtstart=RRULE_ANCHOR, ignoretz=True, forceset=True, cache=False)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"rrule: {text!r} is not a valid RRULE: {exc}", field="rrule") from None


def parse_anchor(text: str, tz: str) -> datetime | None:
    """An interval's anchor date (ISO 8601); without an offset it is read in `tz`."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidArgument(f"anchor_date: {text!r} is not an ISO 8601 date and time", field="anchor_date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    return moment.astimezone(timezone.utc)


def fire_times(cron: str, tz: str, interval: float, rrule: str, anchor: datetime, start: datetime) -> Iterator[datetime]:
    """Every fire time at or after `start`, in order, as UTC datetimes. An interval's
    anchor sets its phase: times before the anchor count too (as in Prefect)."""
    local_zone = zone(tz)
    if cron:
        it = croniter(cron, start.astimezone(local_zone) - timedelta(microseconds=1))
        while True:
            yield it.get_next(datetime).astimezone(timezone.utc)
    elif rrule:
        wall = start.astimezone(local_zone).replace(tzinfo=None)
        previous = None
        for moment in parse_rrule(rrule).xafter(wall - timedelta(hours=3), inc=True):
            fired = moment.replace(tzinfo=local_zone).astimezone(timezone.utc)
            if fired >= start and fired != previous:  # a DST change can name one instant twice
                previous = fired
                yield fired
    elif interval >= DAY and tz and tz != "UTC":
        local_anchor = anchor.astimezone(local_zone).replace(tzinfo=None)
        k = math.floor((start - anchor).total_seconds() / interval) - 1
        while True:
            fired = (local_anchor + k * timedelta(seconds=interval)).replace(tzinfo=local_zone).astimezone(timezone.utc)
            if fired >= start:
                yield fired
            k += 1
    elif interval:
        k = math.ceil((start - anchor).total_seconds() / interval)
        while True:
            yield anchor + k * timedelta(seconds=interval)
            k += 1


def upcoming(
    cron: str, tz: str, interval: float, rrule: str, anchor: datetime, now: datetime, ahead: Ahead
) -> list[datetime]:
    """Prefect's rule: from now, up to `max_runs` fire times within `max_seconds`, stopping
    once there are `min_runs` of them and the last is `min_seconds` away or more."""
    end = now + timedelta(seconds=ahead.max_seconds)
    near = now + timedelta(seconds=ahead.min_seconds)
    found: list[datetime] = []
    for moment in fire_times(cron, tz, interval, rrule, anchor, now):
        if moment > end:
            break
        found.append(moment)
        if len(found) >= ahead.max_runs or (len(found) >= ahead.min_runs and moment >= near):
            break
    return found
