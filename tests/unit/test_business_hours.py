"""Business hours as pure decisions (chalicelib/domain/business_hours.py): split shifts, overnight
intervals, holidays and special hours, clock changes, validation, and properties that hold for
any schedule (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.business_hours import (
    HORIZON_DAYS,
    MINUTES_PER_DAY,
    WEEKDAYS,
    Schedule,
    is_open,
    local_instant,
    next_change,
    next_opening,
    parse_instant,
    schedule_status,
)


def interval(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


def schedule(
    weekly: dict[str, Any] | None = None, exceptions: dict[str, Any] | None = None, timezone: str = "UTC"
) -> Schedule:
    return Schedule(id="support", timezone=timezone, weekly=weekly or {}, exceptions=exceptions or {})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


WEEKDAYS_9_TO_5 = {day: [interval("09:00", "17:00")] for day in WEEKDAYS[:5]}
# 2025-01-06 is a Monday; 2025-01-01 a Wednesday.


# --- Split shifts, overnight intervals, touching intervals -----------------------------------


def test_split_shift_is_closed_over_lunch_and_opens_again() -> None:
    # Given a Monday with a morning and an afternoon shift
    hours = schedule({"mon": [interval("13:00", "17:00"), interval("09:00", "12:00")]})
    # Then it is open in the morning, closes at noon, reopens at 13:00
    assert is_open(hours, utc(2025, 1, 6, 10, 0))
    assert next_change(hours, utc(2025, 1, 6, 10, 0)) == utc(2025, 1, 6, 12, 0)
    assert not is_open(hours, utc(2025, 1, 6, 12, 0))  # intervals are half-open
    assert next_opening(hours, utc(2025, 1, 6, 12, 0)) == utc(2025, 1, 6, 13, 0)
    assert is_open(hours, utc(2025, 1, 6, 16, 59, 59))
    # and after the last shift the next opening is next Monday morning
    assert next_opening(hours, utc(2025, 1, 6, 17, 0)) == utc(2025, 1, 13, 9, 0)
    # Intervals are kept sorted by start
    assert [item.start for item in hours.weekly.mon] == ["09:00", "13:00"]


def test_touching_intervals_are_one_open_period() -> None:
    hours = schedule({"mon": [interval("09:00", "12:00"), interval("12:00", "17:00")]})
    assert next_change(hours, utc(2025, 1, 6, 10, 0)) == utc(2025, 1, 6, 17, 0)
    assert is_open(hours, utc(2025, 1, 6, 12, 0))


def test_an_interval_ending_at_24_00_joins_the_next_days_midnight_start() -> None:
    hours = schedule({"mon": [interval("20:00", "24:00")], "tue": [interval("00:00", "02:00")]})
    assert next_change(hours, utc(2025, 1, 6, 21, 0)) == utc(2025, 1, 7, 2, 0)
    assert is_open(hours, utc(2025, 1, 7, 0, 0))


def test_overnight_interval_runs_into_the_next_day() -> None:
    # Given a Friday night shift from 22:00 to 06:00
    hours = schedule({"fri": [interval("22:00", "06:00")]})
    # Then it is closed before 22:00, opens at 22:00 Friday and closes at 06:00 Saturday
    assert not is_open(hours, utc(2025, 1, 10, 21, 59))
    assert next_opening(hours, utc(2025, 1, 10, 21, 59)) == utc(2025, 1, 10, 22, 0)
    assert is_open(hours, utc(2025, 1, 11, 3, 0))
    assert next_change(hours, utc(2025, 1, 11, 3, 0)) == utc(2025, 1, 11, 6, 0)
    assert not is_open(hours, utc(2025, 1, 11, 6, 0))
    assert not is_open(hours, utc(2025, 1, 11, 23, 0))  # Saturday itself has no hours


def test_sundays_overnight_interval_runs_into_monday() -> None:
    hours = schedule({"sun": [interval("22:00", "02:00")]})
    assert is_open(hours, utc(2025, 1, 6, 1, 30))
    assert next_change(hours, utc(2025, 1, 6, 1, 30)) == utc(2025, 1, 6, 2, 0)


def test_open_around_the_clock_and_never_open() -> None:
    always = schedule({day: [interval("00:00", "24:00")] for day in WEEKDAYS})
    at = utc(2025, 1, 8, 12, 34, 56)
    assert is_open(always, at)
    assert next_change(always, at) is None
    assert next_opening(always, at) == at

    never = schedule()
    assert not is_open(never, at)
    assert next_change(never, at) is None
    assert next_opening(never, at) is None


def test_the_search_stops_at_the_horizon() -> None:
    at = utc(2025, 1, 1, 12, 0)
    near = (at + timedelta(days=HORIZON_DAYS - 10)).date().isoformat()
    far = (at + timedelta(days=HORIZON_DAYS + 10)).date().isoformat()
    assert next_opening(schedule(exceptions={near: [interval("10:00", "11:00")]}), at) == datetime.fromisoformat(
        f"{near}T10:00:00+00:00"
    )
    assert next_opening(schedule(exceptions={far: [interval("10:00", "11:00")]}), at) is None


# --- Holidays and special hours --------------------------------------------------------------


def test_a_holiday_is_closed_all_day() -> None:
    hours = schedule(WEEKDAYS_9_TO_5, {"2025-01-01": []})
    assert not is_open(hours, utc(2025, 1, 1, 10, 0))
    assert next_opening(hours, utc(2024, 12, 31, 18, 0)) == utc(2025, 1, 2, 9, 0)
    assert is_open(hours, utc(2024, 12, 31, 10, 0))


def test_special_hours_replace_the_weekdays_hours_on_their_date_only() -> None:
    hours = schedule(WEEKDAYS_9_TO_5, {"2024-12-24": [interval("10:00", "14:00")]})
    assert not is_open(hours, utc(2024, 12, 24, 9, 30))
    assert next_opening(hours, utc(2024, 12, 24, 9, 30)) == utc(2024, 12, 24, 10, 0)
    assert next_change(hours, utc(2024, 12, 24, 10, 0)) == utc(2024, 12, 24, 14, 0)
    assert not is_open(hours, utc(2024, 12, 24, 15, 0))
    assert is_open(hours, utc(2024, 12, 31, 16, 0))  # the next Tuesday is a normal one


def test_the_night_before_a_holiday_runs_until_its_end_but_the_holidays_own_night_is_off() -> None:
    # Given night shifts on Tuesday and Wednesday, and Wednesday 2025-01-01 a holiday
    hours = schedule({"tue": [interval("22:00", "06:00")], "wed": [interval("22:00", "06:00")]}, {"2025-01-01": []})
    # Then Tuesday's shift still runs into the holiday until 06:00
    assert is_open(hours, utc(2025, 1, 1, 3, 0))
    assert next_change(hours, utc(2025, 1, 1, 3, 0)) == utc(2025, 1, 1, 6, 0)
    # and Wednesday's own shift (which would run into Thursday) does not happen
    assert not is_open(hours, utc(2025, 1, 1, 23, 0))
    assert not is_open(hours, utc(2025, 1, 2, 3, 0))
    assert next_opening(hours, utc(2025, 1, 1, 6, 0)) == utc(2025, 1, 7, 22, 0)


def test_special_hours_can_run_overnight_into_the_next_day() -> None:
    hours = schedule(exceptions={"2025-01-04": [interval("20:00", "02:00")]})
    assert is_open(hours, utc(2025, 1, 5, 1, 0))
    assert next_change(hours, utc(2025, 1, 5, 1, 0)) == utc(2025, 1, 5, 2, 0)


def test_an_exception_overlapping_the_previous_nights_shift_is_joined_with_it() -> None:
    hours = schedule({"tue": [interval("22:00", "06:00")]}, {"2025-01-01": [interval("05:00", "09:00")]})
    assert next_change(hours, utc(2024, 12, 31, 23, 0)) == utc(2025, 1, 1, 9, 0)


# --- Time zones and clock changes ------------------------------------------------------------


def test_istanbul_has_no_clock_changes() -> None:
    hours = schedule({"mon": [interval("09:00", "18:00")]}, timezone="Europe/Istanbul")
    for monday in (date(2025, 1, 6), date(2025, 7, 7)):
        at = datetime.combine(monday, datetime.min.time(), tzinfo=UTC)
        assert next_opening(hours, at) == at.replace(hour=6)
        assert next_change(hours, at.replace(hour=6)) == at.replace(hour=15)


def test_new_york_spring_forward_opens_a_skipped_time_at_the_jump() -> None:
    # 2025-03-09: 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    ny = "America/New_York"
    hours = schedule({"sun": [interval("02:30", "05:00")]}, timezone=ny)
    assert next_opening(hours, utc(2025, 3, 9, 0, 0)) == utc(2025, 3, 9, 7, 0)
    assert next_change(hours, utc(2025, 3, 9, 7, 0)) == utc(2025, 3, 9, 9, 0)  # 05:00 EDT

    ends_in_gap = schedule({"sun": [interval("01:00", "02:30")]}, timezone=ny)
    assert next_opening(ends_in_gap, utc(2025, 3, 9, 0, 0)) == utc(2025, 3, 9, 6, 0)
    assert next_change(ends_in_gap, utc(2025, 3, 9, 6, 0)) == utc(2025, 3, 9, 7, 0)

    # An interval wholly inside the skipped hour is never open that day
    skipped = schedule({"sun": [interval("02:00", "03:00")]}, timezone=ny)
    assert not is_open(skipped, utc(2025, 3, 9, 7, 0))
    assert next_opening(skipped, utc(2025, 3, 9, 5, 0)) == utc(2025, 3, 16, 6, 0)  # 02:00 EDT a week later


def test_new_york_fall_back_uses_the_first_occurrence_of_a_repeated_time() -> None:
    # 2025-11-02: 02:00 EDT goes back to 01:00 EST at 06:00 UTC; 01:00-02:00 happens twice.
    ny = "America/New_York"
    late = schedule({"sun": [interval("01:30", "03:00")]}, timezone=ny)
    assert next_opening(late, utc(2025, 11, 2, 0, 0)) == utc(2025, 11, 2, 5, 30)  # the first 01:30
    assert is_open(late, utc(2025, 11, 2, 6, 15))  # 01:15 EST, the second pass
    assert next_change(late, utc(2025, 11, 2, 5, 30)) == utc(2025, 11, 2, 8, 0)  # 03:00 EST: 2.5 hours

    early = schedule({"sun": [interval("00:00", "01:30")]}, timezone=ny)
    assert next_change(early, utc(2025, 11, 2, 4, 0)) == utc(2025, 11, 2, 5, 30)
    assert not is_open(early, utc(2025, 11, 2, 6, 15))  # the clock says 01:15 again, but the shift ended


def test_new_york_weekdays_keep_local_opening_hours_across_the_change() -> None:
    hours = schedule(WEEKDAYS_9_TO_5, timezone="America/New_York")
    assert next_opening(hours, utc(2025, 3, 7, 13, 0)) == utc(2025, 3, 7, 14, 0)  # Friday 09:00 EST
    assert next_opening(hours, utc(2025, 3, 7, 23, 0)) == utc(2025, 3, 10, 13, 0)  # Monday 09:00 EDT


def test_new_york_overnight_shifts_across_both_changes() -> None:
    hours = schedule({"sat": [interval("22:00", "06:00")]}, timezone="America/New_York")
    # Spring: Saturday 22:00 EST to Sunday 06:00 EDT is 7 hours
    assert next_opening(hours, utc(2025, 3, 8, 12, 0)) == utc(2025, 3, 9, 3, 0)
    assert next_change(hours, utc(2025, 3, 9, 3, 0)) == utc(2025, 3, 9, 10, 0)
    # Autumn: Saturday 22:00 EDT to Sunday 06:00 EST is 9 hours
    assert next_opening(hours, utc(2025, 11, 1, 12, 0)) == utc(2025, 11, 2, 2, 0)
    assert next_change(hours, utc(2025, 11, 2, 2, 0)) == utc(2025, 11, 2, 11, 0)


def test_berlin_clock_changes() -> None:
    berlin = "Europe/Berlin"
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST at 01:00 UTC
    spring = schedule({"sun": [interval("02:15", "04:00")]}, timezone=berlin)
    assert next_opening(spring, utc(2025, 3, 29, 23, 0)) == utc(2025, 3, 30, 1, 0)
    assert next_change(spring, utc(2025, 3, 30, 1, 0)) == utc(2025, 3, 30, 2, 0)
    daily = schedule({day: [interval("08:00", "20:00")] for day in WEEKDAYS}, timezone=berlin)
    assert next_opening(daily, utc(2025, 3, 29, 0, 0)) == utc(2025, 3, 29, 7, 0)  # 08:00 CET
    assert next_opening(daily, utc(2025, 3, 29, 20, 0)) == utc(2025, 3, 30, 6, 0)  # 08:00 CEST
    # 2025-10-26: 03:00 CEST goes back to 02:00 CET at 01:00 UTC
    night = schedule({"sat": [interval("22:00", "06:00")]}, timezone=berlin)
    assert next_opening(night, utc(2025, 10, 25, 12, 0)) == utc(2025, 10, 25, 20, 0)
    assert next_change(night, utc(2025, 10, 25, 20, 0)) == utc(2025, 10, 26, 5, 0)  # 9 hours
    repeated = schedule({"sun": [interval("02:30", "02:45")]}, timezone=berlin)
    assert next_opening(repeated, utc(2025, 10, 26, 0, 0)) == utc(2025, 10, 26, 0, 30)  # 02:30 CEST
    assert not is_open(repeated, utc(2025, 10, 26, 1, 35))  # 02:35 CET, the second pass


def test_a_skipped_midnight_and_a_skipped_day() -> None:
    # Havana skips 00:00-01:00 on 2024-03-10: a shift from midnight opens at 01:00 CDT
    havana = schedule({"sun": [interval("00:00", "02:00")]}, timezone="America/Havana")
    assert next_opening(havana, utc(2024, 3, 10, 0, 0)) == utc(2024, 3, 10, 5, 0)
    # Samoa skipped Friday 2011-12-30 entirely: that day's hours never happen
    apia = schedule({day: [interval("09:00", "17:00")] for day in WEEKDAYS}, timezone="Pacific/Apia")
    assert next_opening(apia, utc(2011, 12, 30, 3, 0)) == utc(2011, 12, 30, 19, 0)  # Saturday 09:00 +14


def test_clocks_going_back_across_midnight_keep_the_new_days_shift_open() -> None:
    # Goose Bay, 2006-10-29: at 00:01 ADT the clock went back to 23:01 AST on Saturday
    hours = schedule({"sun": [interval("00:00", "02:00")]}, timezone="America/Goose_Bay")
    assert next_opening(hours, utc(2006, 10, 29, 0, 0)) == utc(2006, 10, 29, 3, 0)
    assert is_open(hours, utc(2006, 10, 29, 3, 30))  # the clock shows Saturday 23:30 again
    assert next_change(hours, utc(2006, 10, 29, 3, 30)) == utc(2006, 10, 29, 6, 0)  # Sunday 02:00 AST


def test_status_gathers_the_three_answers() -> None:
    hours = schedule({"mon": [interval("09:00", "12:00")]})
    closed = schedule_status(hours, datetime(2025, 1, 6, 10, 0, tzinfo=ZoneInfo("Europe/Istanbul")))
    assert (closed.open, closed.at) == (False, utc(2025, 1, 6, 7, 0))
    assert closed.next_change == closed.next_opening == utc(2025, 1, 6, 9, 0)
    opened = schedule_status(hours, utc(2025, 1, 6, 9, 0))
    assert (opened.open, opened.next_change, opened.next_opening) == (True, utc(2025, 1, 6, 12, 0), opened.at)


def test_instants_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(schedule(), datetime(2025, 1, 6, 10, 0))


# --- Validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({"mon": [interval("9:00", "12:00")]}, "not a start time"),
        ({"mon": [interval("09:00", "25:00")]}, "not an end time"),
        ({"mon": [interval("09:60", "12:00")]}, "not a start time"),
        ({"mon": [interval("24:00", "12:00")]}, "not a start time"),
        ({"mon": [{"start": 900, "end": "12:00"}]}, "valid string"),
        ({"mon": [interval("09:00", "09:00")]}, "is empty"),
        ({"mon": [interval("00:00", "00:00")]}, "'00:00' to '24:00'"),
        ({"mon": [{"start": "09:00"}]}, "end"),
        ({"mon": [{"start": "09:00", "end": "10:00", "note": "x"}]}, "Extra inputs"),
        ({"monday": [interval("09:00", "12:00")]}, "Extra inputs"),
        ({"mon": [interval("09:00", "12:00"), interval("11:00", "14:00")]}, "mon 09:00-12:00 and mon 11:00-14:00"),
        ({"mon": [interval("22:00", "06:00")], "tue": [interval("05:00", "09:00")]}, "mon 22:00-06:00 and tue"),
        ({"sun": [interval("22:00", "06:00")], "mon": [interval("05:00", "09:00")]}, "mon 05:00-09:00"),
        ({"mon": [interval(f"{hour:02d}:00", f"{hour:02d}:30") for hour in range(11)]}, "at most 10 intervals"),
    ],
)
def test_weekly_hours_that_are_refused(weekly: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        schedule(weekly)


def test_overlaps_are_refused_not_merged() -> None:
    with pytest.raises(ValidationError, match="refused, not merged"):
        schedule({"mon": [interval("09:00", "12:00"), interval("10:00", "11:00")]})


def test_whole_days_and_every_interval_limit_are_accepted() -> None:
    hours = schedule(
        {
            "mon": [interval("00:00", "24:00")],
            "tue": [interval(f"{hour:02d}:00", f"{hour:02d}:30") for hour in range(10)],
            "wed": [interval("12:00", "00:00")],
        }
    )
    assert len(hours.weekly.tue) == 10
    assert is_open(hours, utc(2025, 1, 8, 23, 59))


@pytest.mark.parametrize(
    ("exceptions", "message"),
    [
        ({"2024-02-30": []}, "not a real date"),
        ({"20240101": []}, "not a date"),
        ({"2024-1-01": []}, "not a date"),
        ({"2024-12-24": [interval("10:00", "14:00"), interval("13:00", "15:00")]}, "2024-12-24 10:00-14:00 and"),
        ({(date(2025, 1, 1) + timedelta(days=n)).isoformat(): [] for n in range(401)}, "at most 400"),
        ({"2025-01-01": [interval("00:00", "00:30")] * 11}, "at most 10"),
    ],
)
def test_exceptions_that_are_refused(exceptions: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        schedule(exceptions=exceptions)


def test_exceptions_are_kept_in_date_order() -> None:
    hours = schedule(exceptions={"2025-12-25": [], "2025-01-01": [], "2025-05-01": [interval("10:00", "12:00")]})
    assert list(hours.exceptions) == ["2025-01-01", "2025-05-01", "2025-12-25"]
    assert (
        len(
            schedule(exceptions={(date(2025, 1, 1) + timedelta(days=n)).isoformat(): [] for n in range(400)}).exceptions
        )
        == 400
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "not a known IANA time zone"),
        ({"timezone": "../etc/passwd"}, "not an IANA time zone name"),
        ({"id": "a b"}, "should match pattern"),
        ({"id": "x" * 65}, "should match pattern"),
        ({"default_language": "English"}, "should match pattern"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_schedule_fields_that_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Schedule.model_validate({"id": "support", "timezone": "UTC", **fields})


def test_a_schedule_names_its_language_and_zone() -> None:
    hours = Schedule(id="tr-support_1", timezone=" Europe/Istanbul ", default_language="tr")
    assert (hours.timezone, hours.default_language) == ("Europe/Istanbul", "tr")
    assert Schedule(id="s", timezone="UTC").default_language == "en"


# --- Reading instants ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-10T07:00:00Z", utc(2025, 3, 10, 7, 0)),
        ("2025-03-10T10:00:00+03:00", utc(2025, 3, 10, 7, 0)),
        ("2025-03-10T10:00:00 03:00", utc(2025, 3, 10, 7, 0)),  # '+' lost in an unencoded query string
        ("2025-03-10T02:00:00.5-05:00", utc(2025, 3, 10, 7, 0, 0, 500000)),
    ],
)
def test_instants_that_are_read(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ISO 8601"),
        ("yesterday", "not an ISO 8601 instant"),
        ("2025-03-10T07:00:00", "no UTC offset"),
        ("2025-03-10", "no UTC offset"),
        ("1066-10-14T09:00:00Z", "years"),
        ("9999-12-31T23:59:59-23:59", "years"),
        ("2025-03-10T07:00:00Z" + "0" * 80, "ISO 8601"),
    ],
)
def test_instants_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_instant(text)


# --- Properties for any schedule (hypothesis) --------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Istanbul",
    "America/New_York",
    "Europe/Berlin",
    "Europe/Dublin",  # "negative" DST
    "Australia/Lord_Howe",  # a half-hour change
    "America/Santiago",  # changes at midnight
    "America/Havana",  # skips midnight
    "Pacific/Apia",  # skipped a whole day in 2011
    "Asia/Kathmandu",  # +05:45
    "America/Goose_Bay",  # went back across midnight until 2010
]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """Every change of the zone's UTC offset from 2000 to 2027, to the second."""
    zone = ZoneInfo(zone_name)
    found = []
    day = utc(2000, 1, 1)
    while day.year < 2027:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = int(day.timestamp()), int(following.timestamp())
            before = day.astimezone(zone).utcoffset()
            while low < high:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, zone).utcoffset() != before:
                    high = middle
                else:
                    low = middle + 1
            found.append(datetime.fromtimestamp(low, UTC))
        day = following
    return tuple(found)


# A schedule's intervals all lie within its "day" of 24 hours from a boundary minute (04:00 to
# 04:00 the next day, say), so that one day's intervals never overlap the next's (overlaps are
# refused); boundaries and end points favour whole and half hours, where clocks change.
minutes = st.one_of(st.integers(0, 47).map(lambda half_hours: half_hours * 30), st.integers(0, MINUTES_PER_DAY - 1))


@st.composite
def day_intervals(draw: st.DrawFn, boundary: int) -> list[dict[str, str]]:
    """Up to four intervals one after another from `boundary`, sometimes touching (gap 0)."""
    lengths = st.one_of(st.sampled_from([30, 60, 120, 240, 480, 720, 1440]), st.integers(1, 900))
    gaps = st.one_of(st.just(0), st.sampled_from([30, 60, 120]), st.integers(1, 600))
    cursor = boundary + draw(gaps)
    intervals = []
    for _ in range(draw(st.integers(0, 4))):
        start = cursor
        end = start + min(draw(lengths), MINUTES_PER_DAY if start == 0 else MINUTES_PER_DAY - 1)  # no 24-hour overnight
        if start >= MINUTES_PER_DAY or end > boundary + MINUTES_PER_DAY:
            break
        end_text = "24:00" if end == MINUTES_PER_DAY else f"{end % MINUTES_PER_DAY // 60:02d}:{end % 60:02d}"
        intervals.append(interval(f"{start // 60:02d}:{start % 60:02d}", end_text))
        cursor = end + draw(gaps)
    return intervals


@st.composite
def instants(draw: st.DrawFn, zone_name: str) -> datetime:
    near = transitions(zone_name)
    if near and draw(st.booleans()):
        anchor = draw(st.sampled_from(near))
        seconds = draw(st.one_of(st.integers(-7200, 7200), st.integers(-3 * 86400, 3 * 86400)))
        return anchor + timedelta(seconds=seconds, microseconds=draw(st.integers(0, 999_999)))
    return draw(st.datetimes(datetime(2010, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)))


@st.composite
def schedules_and_instants(draw: st.DrawFn) -> tuple[Schedule, datetime]:
    zone_name = draw(st.sampled_from(ZONES))
    at = draw(instants(zone_name))
    boundary = draw(minutes)
    weekly = {day: draw(day_intervals(boundary)) for day in WEEKDAYS if draw(st.booleans())}
    local_day = at.astimezone(ZoneInfo(zone_name)).date()
    exceptions = {
        (local_day + timedelta(days=offset)).isoformat(): draw(st.one_of(st.just([]), day_intervals(boundary)))
        for offset in draw(st.sets(st.integers(-2, 4), max_size=3))
    }
    hours = Schedule(id="prop", timezone=zone_name, weekly=weekly, exceptions=exceptions)
    # Often move `at` close to where the schedule opens or closes, where mistakes show.
    edges = [
        instant
        for day in (local_day - timedelta(days=1), local_day, local_day + timedelta(days=1))
        for item in hours.intervals_on(day)
        for instant in (
            local_instant(hours.zone, day, item.start_minute),
            local_instant(hours.zone, day, item.span_minutes[1]),
        )
    ]
    if edges and draw(st.booleans()):
        at = draw(st.sampled_from(edges)) + timedelta(seconds=draw(st.integers(-5400, 5400)))
    return hours, at


def wall_clock_open(hours: Schedule, at: datetime) -> bool:
    """An independent reading of the rules by the local wall clock: open if the clock shows a
    time within one of the day's intervals, or within the overnight part of the day before's."""
    local = at.astimezone(ZoneInfo(hours.timezone))
    clock = local.strftime("%H:%M:%S.%f")  # compared as text: "HH:MM" sorts like the time it names

    def intervals(day: date) -> list[Any]:
        special = hours.exceptions.get(day.isoformat())
        return special if special is not None else getattr(hours.weekly, day.strftime("%a").lower())

    for item in intervals(local.date()):
        if item.start <= clock and (clock < item.end or item.end <= item.start):
            return True
    return any(item.end < item.start and clock < item.end for item in intervals(local.date() - timedelta(days=1)))


def first_pass(hours: Schedule, at: datetime) -> bool:
    """Whether the local time at `at` shows for the first (or only) time."""
    local = at.astimezone(hours.zone)
    return local.replace(tzinfo=None).replace(tzinfo=hours.zone, fold=0).astimezone(UTC) == at


@PROPERTY_SETTINGS
@given(case=schedules_and_instants(), fraction=st.floats(0, 1))
def test_is_open_holds_until_the_next_change_and_flips_there(case: tuple[Schedule, datetime], fraction: float) -> None:
    hours, at = case
    open_now = is_open(hours, at)
    change = next_change(hours, at)
    if change is None:
        probes = [at + timedelta(hours=1), at + timedelta(days=3), at + timedelta(days=HORIZON_DAYS - 40)]
    else:
        assert change > at
        assert is_open(hours, change) != open_now
        probes = [change - timedelta(microseconds=1), change - timedelta(seconds=1), at + (change - at) * fraction]
        probes = [probe for probe in probes if at <= probe < change]
        following = next_change(hours, change)
        assert following is None or following > change
    for probe in probes:
        assert is_open(hours, probe) == open_now, probe


@PROPERTY_SETTINGS
@given(case=schedules_and_instants())
def test_next_opening_is_open_and_the_first_such_instant(case: tuple[Schedule, datetime]) -> None:
    hours, at = case
    opening = next_opening(hours, at)
    if is_open(hours, at):
        assert opening == at
        return
    assert opening == next_change(hours, at)
    if opening is not None:
        assert opening > at
        assert is_open(hours, opening)
        assert not is_open(hours, opening - timedelta(microseconds=1))


@PROPERTY_SETTINGS
@given(case=schedules_and_instants(), seconds=st.integers(-86400, 86400))
def test_is_open_agrees_with_the_wall_clock_where_the_time_shows_once(
    case: tuple[Schedule, datetime], seconds: int
) -> None:
    hours, at = case
    change = next_change(hours, at)
    probes = [at, at + timedelta(seconds=seconds), *((change, change - timedelta(seconds=1)) if change else ())]
    today = at.astimezone(hours.zone).date()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        for item in hours.intervals_on(day):
            for minute in item.span_minutes:
                edge = local_instant(hours.zone, day, minute)
                probes.extend((edge, edge - timedelta(seconds=1), edge + timedelta(seconds=1)))
    for probe in probes:
        if first_pass(hours, probe):
            assert is_open(hours, probe) == wall_clock_open(hours, probe), probe


@PROPERTY_SETTINGS
@given(
    zone_name=st.sampled_from(ZONES),
    data=st.data(),
    pair=st.lists(st.integers(0, 2 * MINUTES_PER_DAY), min_size=2, max_size=2),
)
def test_local_times_map_to_instants_in_order(zone_name: str, data: st.DataObject, pair: list[int]) -> None:
    zone = ZoneInfo(zone_name)
    changes = [change.astimezone(zone).date() for change in transitions(zone_name)]
    days = (
        st.one_of(st.sampled_from(changes), st.dates(date(2010, 1, 1), date(2026, 12, 31)))
        if changes
        else st.dates(date(2010, 1, 1), date(2026, 12, 31))
    )
    day = data.draw(days)
    earlier, later = sorted(pair)
    first, second = local_instant(zone, day, earlier), local_instant(zone, day, later)
    assert first <= second
    wall = datetime.combine(day, datetime.min.time()) + timedelta(minutes=earlier)
    # The instant shows that wall time, or is the jump that skipped it (the wall clock just after is later)
    shown = first.astimezone(zone).replace(tzinfo=None)
    assert shown == wall or (
        shown > wall and (first - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < wall
    )
