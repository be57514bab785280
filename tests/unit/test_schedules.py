"""Schedules follow Prefect's: the runs kept ahead, interval anchor dates, RRULE schedules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from shiftboss.errors import InvalidArgument
from shiftboss.services.scheduler import deployments, schedules
from shiftboss.services.scheduler.schedules import Ahead, upcoming

NOW = datetime(2026, 3, 20, 10, 15, 30, tzinfo=timezone.utc)
PREFECT = Ahead()  # min_runs 3, max_runs 100, one hour, 100 days


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_prefect_scheduler_min_runs_a_daily_schedule_shows_three_upcoming_runs() -> None:
    """A daily schedule made today has runs to show at once, not only within the hour."""
    times = upcoming("0 9 * * *", "UTC", 0, "", NOW, NOW, PREFECT)
    assert times == [utc(2026, 3, 21, 9), utc(2026, 3, 22, 9), utc(2026, 3, 23, 9)]


def test_prefect_scheduler_min_scheduled_time_fills_the_hour() -> None:
    times = upcoming("", "UTC", 60, "", NOW, NOW, PREFECT)
    assert times[0] == NOW and times[-1] == NOW + timedelta(hours=1) and len(times) == 61


def test_prefect_scheduler_max_runs_caps_a_frequent_schedule() -> None:
    assert len(upcoming("", "UTC", 1, "", NOW, NOW, PREFECT)) == 100


def test_prefect_scheduler_max_scheduled_time_is_100_days() -> None:
    assert upcoming("0 0 1 1 *", "UTC", 0, "", NOW, NOW, PREFECT) == []  # next 1 January is 287 days away
    monthly = upcoming("0 0 1 * *", "UTC", 0, "", NOW, NOW, Ahead(min_runs=5))
    assert monthly == [utc(2026, 4, 1), utc(2026, 5, 1), utc(2026, 6, 1)]


def test_prefect_interval_anchor_date_sets_the_phase() -> None:
    anchor = schedules.parse_anchor("2026-01-01T00:40:00Z", "UTC")
    assert anchor is not None
    times = upcoming("", "UTC", 3600, "", anchor, NOW, PREFECT)
    assert times[:3] == [utc(2026, 3, 20, 10, 40), utc(2026, 3, 20, 11, 40), utc(2026, 3, 20, 12, 40)]
    # an anchor in the future is a phase too: the times before it count
    later = schedules.parse_anchor("2026-03-20T13:40:00Z", "UTC")
    assert upcoming("", "UTC", 3600, "", later, NOW, PREFECT)[0] == utc(2026, 3, 20, 10, 40)


def test_prefect_interval_of_a_day_keeps_its_local_time_across_dst() -> None:
    """Berlin moves its clocks on 29 March 2026: a daily 09:00 stays 09:00 there."""
    anchor = schedules.parse_anchor("2026-03-01T09:00:00", "Europe/Berlin")
    assert anchor == utc(2026, 3, 1, 8)
    times = upcoming("", "Europe/Berlin", 86400, "", anchor, NOW, Ahead(min_runs=12))
    local = [t.astimezone(ZoneInfo("Europe/Berlin")) for t in times]
    assert {(t.hour, t.minute) for t in local} == {(9, 0)}
    assert local[0].day == 21 and local[-1] == datetime(2026, 4, 1, 9, tzinfo=ZoneInfo("Europe/Berlin"))
    # shorter intervals step in UTC
    hourly = upcoming("", "Europe/Berlin", 3600, "", anchor, NOW, PREFECT)
    assert all(b - a == timedelta(hours=1) for a, b in zip(hourly, hourly[1:]))


def test_prefect_rrule_schedule_in_its_timezone() -> None:
    times = upcoming("", "America/New_York", 0, "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", NOW, NOW, PREFECT)
    local = [t.astimezone(ZoneInfo("America/New_York")) for t in times]
    assert [(t.strftime("%a %d"), t.hour, t.minute) for t in local] == [("Mon 23", 9, 0), ("Wed 25", 9, 0), ("Mon 30", 9, 0)]


def test_prefect_rrule_with_dtstart_and_until() -> None:
    rule = "DTSTART:20260322T063000\nRRULE:FREQ=DAILY;UNTIL=20260324T235959"
    assert upcoming("", "UTC", 0, rule, NOW, NOW, PREFECT) == [utc(2026, 3, 22, 6, 30), utc(2026, 3, 23, 6, 30), utc(2026, 3, 24, 6, 30)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rrule": "FREQ=SOMETIMES"}, "rrule: 'FREQ=SOMETIMES' is not a valid RRULE"),
        ({"rrule": "FREQ=DAILY;" * 700}, "rrule: 7700 characters is over the limit of 6500"),
        ({"cron": "0 * * * *", "rrule": "FREQ=DAILY"}, "cron: give one of a cron expression, an interval or an rrule, not cron and rrule"),
        ({"cron": "0 * * * *", "anchor_date": "2026-01-01T00:00:00Z"}, "anchor_date: an anchor date belongs to an interval schedule"),
        ({"interval": 60, "anchor_date": "soon"}, "anchor_date: 'soon' is not an ISO 8601 date and time"),
        ({"rrule": "FREQ=DAILY", "tz": "Mars/Olympus"}, "timezone: unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(kwargs: dict, message: str) -> None:
    args = {"cron": "", "tz": "", "interval": 0.0, "rrule": "", "anchor_date": "", **kwargs}
    with pytest.raises(InvalidArgument) as refused:
        deployments.schedule_row(args["cron"], args["tz"], args["interval"], args["rrule"], args["anchor_date"])
    assert refused.value.message.startswith(message)
