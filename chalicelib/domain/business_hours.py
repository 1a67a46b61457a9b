"""Business hours as pure decisions: is a schedule open at an instant, and when does that change.

Nothing here does I/O. A `Schedule` is an IANA time zone, weekly intervals per weekday and
exceptions by date, all in the schedule's local wall-clock time:

- A day may hold several intervals (split shifts). `{"start": "22:00", "end": "06:00"}` (end
  before start) runs overnight into the next day; `"24:00"` is allowed as an end (midnight at
  the end of the day). Intervals are half-open: open at `start`, closed at `end`.
- Overlapping intervals are refused, not merged (within a day, across days for the weekly hours,
  sun's overnight intervals running into mon included); touching ones (`09:00-12:00` and
  `12:00-17:00`) are allowed and count as one open period, so no change is reported at 12:00.
- An exception replaces the weekly hours of its own date: `[]` is closed all day (a holiday), a
  list is special hours. An overnight interval that started the day before still runs until its
  end on the exception's date, and an exception's own overnight interval runs into the next day.
  To cut a shift short on a holiday, give the day before an exception too.
- Clock changes (zoneinfo): a local time that occurs twice (clocks go back) means its first
  occurrence; a local time skipped by a jump forward means the first instant after the jump (so
  `02:30` on a US spring-forward day opens at 03:00 EDT, and `02:00-03:00` that day is never open).

`is_open`, `next_change`, `next_opening` and `schedule_status` take timezone-aware instants and
answer aware UTC datetimes; they search at most `HORIZON_DAYS` ahead and answer None beyond.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.consent import check_timezone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS_PER_DAY = 10
MAX_EXCEPTIONS = 400
HORIZON_DAYS = 400
SCHEDULE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"  # BCP 47-ish: "en", "tr", "pt-BR"
MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIRST_DAY = date.min + timedelta(days=4)  # keep conversions clear of datetime's range
_LAST_DAY = date.max - timedelta(days=4)


def clock_minutes(text: str) -> int:
    """Minutes after midnight of an "HH:MM" clock time ("24:00" is 1440)."""
    return int(text[:2]) * 60 + int(text[3:])


def clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class Interval(BaseModel):
    """Open from `start` to `end` local time; an end before the start runs into the next day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    @field_validator("start")
    @classmethod
    def _start_clock(cls, value: Any) -> str:
        if not isinstance(value, str) or not _CLOCK.match(value):
            raise ValueError(f"{_shown(value)} is not a start time: use 24-hour 'HH:MM' from '00:00' to '23:59'")
        return value

    @field_validator("end")
    @classmethod
    def _end_clock(cls, value: Any) -> str:
        if not isinstance(value, str) or not (_CLOCK.match(value) or value == "24:00"):
            raise ValueError(f"{_shown(value)} is not an end time: use 24-hour 'HH:MM' from '00:00' to '24:00'")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Interval:
        if self.start_minute == self.end_minute:
            raise ValueError(
                f"{self.start}-{self.end} is empty; an interval needs an end other than its start "
                "(a whole day is '00:00' to '24:00')"
            )
        return self

    @property
    def start_minute(self) -> int:
        return clock_minutes(self.start)

    @property
    def end_minute(self) -> int:
        return clock_minutes(self.end)

    @property
    def overnight(self) -> bool:
        return self.end_minute < self.start_minute

    @property
    def span_minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after the start day's midnight; end > start, up to 2879."""
        return self.start_minute, self.end_minute + (MINUTES_PER_DAY if self.overnight else 0)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _shown(value: Any) -> str:
    return repr(value)[:40]


def _checked_day(intervals: list[Interval], where: str) -> list[Interval]:
    """A day's intervals sorted by start; refuses more than the maximum and any overlap."""
    if len(intervals) > MAX_INTERVALS_PER_DAY:
        raise ValueError(f"{where}: at most {MAX_INTERVALS_PER_DAY} intervals per day")
    ordered = sorted(intervals, key=lambda interval: interval.span_minutes)
    for earlier, later in pairwise(ordered):
        if later.span_minutes[0] < earlier.span_minutes[1]:
            raise ValueError(_overlap(f"{where} {earlier}", f"{where} {later}"))
    return ordered


def _overlap(first: str, second: str) -> str:
    return f"{first} and {second} overlap; overlapping intervals are refused, not merged: join them into one"


def _bounded_list(value: Any, where: str, maximum: int) -> Any:
    if isinstance(value, list | dict) and len(value) > maximum:
        raise ValueError(f"{where}: at most {maximum} {'intervals per day' if isinstance(value, list) else 'dates'}")
    return value


class WeeklyHours(BaseModel):
    """The regular week; a day left out (or `[]`) is closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: list[Interval] = Field(default_factory=list)
    tue: list[Interval] = Field(default_factory=list)
    wed: list[Interval] = Field(default_factory=list)
    thu: list[Interval] = Field(default_factory=list)
    fri: list[Interval] = Field(default_factory=list)
    sat: list[Interval] = Field(default_factory=list)
    sun: list[Interval] = Field(default_factory=list)

    @field_validator(*WEEKDAYS, mode="before")
    @classmethod
    def _few(cls, value: Any) -> Any:
        return _bounded_list(value, "day", MAX_INTERVALS_PER_DAY)

    @field_validator(*WEEKDAYS)
    @classmethod
    def _sorted_apart(cls, value: list[Interval], info: Any) -> list[Interval]:
        return _checked_day(value, info.field_name)

    @model_validator(mode="after")
    def _apart_across_days(self) -> WeeklyHours:
        # Each interval as minutes of the week (mon 00:00 = 0); a copy one week later catches
        # sun's overnight intervals running into mon's first ones.
        spans: list[tuple[int, int, str]] = []
        for index, day in enumerate(WEEKDAYS):
            for interval in self.day(index):
                start, end = interval.span_minutes
                for offset in (index * MINUTES_PER_DAY, index * MINUTES_PER_DAY + _MINUTES_PER_WEEK):
                    spans.append((offset + start, offset + end, f"{day} {interval}"))
        spans.sort()
        latest: tuple[int, int, str] | None = None
        for span in spans:
            if latest is not None and span[0] < latest[1]:
                raise ValueError(_overlap(latest[2], span[2]))
            if latest is None or span[1] > latest[1]:
                latest = span
        return self

    def day(self, weekday: int) -> list[Interval]:
        """The intervals of a weekday (0 = mon, as date.weekday())."""
        intervals: list[Interval] = getattr(self, WEEKDAYS[weekday])
        return intervals


class Schedule(BaseModel):
    """A named set of business hours (see the module's docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SCHEDULE_ID_PATTERN)
    timezone: str
    weekly: WeeklyHours = Field(default_factory=WeeklyHours)
    exceptions: dict[str, list[Interval]] = Field(default_factory=dict)
    default_language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    updated_at: datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("exceptions", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for intervals in value.values():
                _bounded_list(intervals, "exceptions", MAX_INTERVALS_PER_DAY)
        return _bounded_list(value, "exceptions", MAX_EXCEPTIONS)

    @field_validator("exceptions")
    @classmethod
    def _dated(cls, value: dict[str, list[Interval]]) -> dict[str, list[Interval]]:
        checked: dict[str, list[Interval]] = {}
        for key, intervals in value.items():
            if not _DATE.match(key):
                raise ValueError(f"{_shown(key)} is not a date: use 'YYYY-MM-DD'")
            try:
                date.fromisoformat(key)
            except ValueError:
                raise ValueError(f"'{key}' is not a real date") from None
            checked[key] = _checked_day(intervals, key)
        return dict(sorted(checked.items()))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def intervals_on(self, day: date) -> list[Interval]:
        """The intervals that start on a local date: its exception if it has one, else its weekday's."""
        special = self.exceptions.get(day.isoformat())
        return special if special is not None else self.weekly.day(day.weekday())


@dataclass(frozen=True)
class ScheduleStatus:
    """A schedule at one instant: open or not, the next change and the next opening (UTC)."""

    schedule_id: str
    timezone: str
    at: datetime
    open: bool
    next_change: datetime | None
    next_opening: datetime | None


# --- Local wall-clock time → instants ----------------------------------------------------------


@lru_cache(maxsize=8192)
def local_instant(zone: ZoneInfo, day: date, minute: int) -> datetime:
    """The UTC instant a local date and minute of the day (up to 1440, the next midnight) stand
    for: the first occurrence of a repeated time; for a time skipped by a jump forward, the
    first instant after it (the jump itself)."""
    if minute >= MINUTES_PER_DAY:
        day, minute = day + timedelta(days=minute // MINUTES_PER_DAY), minute % MINUTES_PER_DAY
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the offset before any change
    if _wall(first, zone) == wall:
        return first
    # Skipped: fold=0 and fold=1 land on either side of the jump; find its instant (to the second).
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = sorted((int(first.timestamp()), int(other.timestamp())))
    while low < high:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("instants must be timezone-aware (give a UTC offset or Z)")
    return at.astimezone(UTC)


def _local_date(schedule: Schedule, at: datetime) -> date:
    return min(max(at.astimezone(schedule.zone).date(), _FIRST_DAY), _LAST_DAY)


def _spans_on(schedule: Schedule, day: date) -> Iterator[tuple[datetime, datetime]]:
    """The open spans that start on a local date, in order; spans a clock change made empty are left out."""
    zone = schedule.zone
    for interval in schedule.intervals_on(day):
        start, end = interval.span_minutes
        opens, closes = local_instant(zone, day, start), local_instant(zone, day, end)
        if closes > opens:
            yield opens, closes


def _spans(schedule: Schedule, first: date, last: date) -> Iterator[tuple[datetime, datetime]]:
    """Every open span starting on a local date from `first` to `last`, by start, touching or
    overlapping ones joined into one."""
    current: tuple[datetime, datetime] | None = None
    day = first
    while day <= last:
        for opens, closes in _spans_on(schedule, day):
            if current is not None and opens <= current[1]:
                current = (current[0], max(current[1], closes))
                continue
            if current is not None:
                yield current
            current = (opens, closes)
        day += timedelta(days=1)
    if current is not None:
        yield current


# --- Decisions ---------------------------------------------------------------------------------


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether the schedule is open at an instant."""
    instant = _utc(at)
    today = _local_date(schedule, instant)
    # A span starts on its local date and ends by the next day's end; a day before and after
    # covers every span that can hold the instant (clocks going back at midnight included).
    return any(
        opens <= instant < closes
        for day in (today - timedelta(days=1), today, today + timedelta(days=1))
        for opens, closes in _spans_on(schedule, day)
    )


def next_change(schedule: Schedule, at: datetime) -> datetime | None:
    """The first instant after `at` when the schedule opens (if closed at `at`) or closes (if
    open); None if that is not within HORIZON_DAYS (always closed, or open around the clock)."""
    instant = _utc(at)
    today = _local_date(schedule, instant)
    last = min(today + timedelta(days=HORIZON_DAYS), _LAST_DAY)
    # Spans starting after `last` start after its midnight: changes before it are final.
    horizon = local_instant(schedule.zone, last, 0)
    for opens, closes in _spans(schedule, today - timedelta(days=1), last):
        change = opens if instant < opens else closes if instant < closes else None
        if change is not None:
            return change if change < horizon else None
    return None


def next_opening(schedule: Schedule, at: datetime) -> datetime | None:
    """`at` itself (in UTC) if open then, else the next instant it opens; None if not within HORIZON_DAYS."""
    instant = _utc(at)
    return instant if is_open(schedule, instant) else next_change(schedule, instant)


MAX_OPEN_SECONDS_DAYS = 400  # a longer duration is counted over its first 400 days only


def open_seconds(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Seconds between two instants during which the schedule was open (business time). A
    duration longer than MAX_OPEN_SECONDS_DAYS counts only its first that many days, so the cost
    stays bounded whatever the input; an end before the start gives 0."""
    begin, finish = _utc(start), _utc(end)
    finish = min(finish, begin + timedelta(days=MAX_OPEN_SECONDS_DAYS))
    if finish <= begin:
        return 0.0
    first = _local_date(schedule, begin) - timedelta(days=1)
    last = _local_date(schedule, finish)
    total = 0.0
    for opens, closes in _spans(schedule, first, last):
        overlap = (min(closes, finish) - max(opens, begin)).total_seconds()
        if overlap > 0:
            total += overlap
    return total


def schedule_status(schedule: Schedule, at: datetime) -> ScheduleStatus:
    instant = _utc(at)
    open_now = is_open(schedule, instant)
    change = next_change(schedule, instant)
    return ScheduleStatus(
        schedule_id=schedule.id,
        timezone=schedule.timezone,
        at=instant,
        open=open_now,
        next_change=change,
        next_opening=instant if open_now else change,
    )


# --- Reading instants ----------------------------------------------------------------------------

MIN_YEAR = 1900
MAX_YEAR = 9000
_MAX_INSTANT_CHARS = 64
_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a UTC offset or Z ("2025-03-10T07:00:00Z"), in UTC; ValueError
    otherwise. A '+' offset that a query string turned into a space is read as '+'."""
    raw = (text or "").strip()
    if not raw or len(raw) > _MAX_INSTANT_CHARS:
        raise ValueError("give an ISO 8601 instant such as '2025-03-10T07:00:00Z'")
    candidate = _SPACED_OFFSET.sub(r"+\1", raw) if "T" in raw else raw
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(f"{_shown(raw)} is not an ISO 8601 instant such as '2025-03-10T07:00:00Z'") from None
    if value.tzinfo is None:
        raise ValueError(f"{_shown(raw)} has no UTC offset: add 'Z' or one such as '+03:00'")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"instants must fall in the years {MIN_YEAR} to {MAX_YEAR}")
    return utc
