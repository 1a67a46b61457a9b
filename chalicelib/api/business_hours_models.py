"""Request and response shapes of the business hours API (`/v1/business-hours`).

Instants are ISO 8601 in UTC with a Z; the status also gives each in the schedule's own zone
(`*_local`, with its UTC offset), which is what a customer-facing "we are back at" text needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.business_hours import (
    MAX_EXCEPTIONS,
    WEEKDAYS,
    Interval,
    Schedule,
    ScheduleStatus,
)
from chalicelib.domain.events import iso_utc


class BusinessHoursPut(BaseModel):
    """`PUT /v1/business-hours/{id}`: the whole schedule (a PUT replaces it). `id` may be given
    (so a GET's answer can be sent back) but must then be the path's. The checks that matter
    (clock format, overlaps, limits, the time zone) are the domain's Schedule's."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=64)
    timezone: str = Field(min_length=1, max_length=64)
    weekly: dict[str, Any] = Field(default_factory=dict, max_length=len(WEEKDAYS))
    exceptions: dict[str, Any] = Field(default_factory=dict, max_length=MAX_EXCEPTIONS)
    default_language: str = Field(default="en", max_length=35)
    updated_at: str | None = Field(default=None, max_length=64)  # in a GET's answer; ignored on the way in

    def schedule(self, schedule_id: str, updated_at: datetime) -> Schedule:
        """The domain's Schedule; ValueError (a pydantic ValidationError) for what it refuses."""
        if self.id is not None and self.id != schedule_id:
            raise ValueError(f"body 'id' '{self.id}' differs from the path's '{schedule_id}'; leave it out")
        return Schedule.model_validate(
            {
                "id": schedule_id,
                "timezone": self.timezone,
                "weekly": self.weekly,
                "exceptions": self.exceptions,
                "default_language": self.default_language,
                "updated_at": updated_at,
            }
        )


def _intervals(intervals: list[Interval]) -> list[dict[str, str]]:
    return [{"start": interval.start, "end": interval.end} for interval in intervals]


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "timezone": schedule.timezone,
        "weekly": {day: _intervals(schedule.weekly.day(index)) for index, day in enumerate(WEEKDAYS)},
        "exceptions": {day: _intervals(intervals) for day, intervals in schedule.exceptions.items()},
        "default_language": schedule.default_language,
        "updated_at": iso_utc(schedule.updated_at) if schedule.updated_at else None,
    }


def _local(instant: datetime | None, status: ScheduleStatus) -> str | None:
    if instant is None:
        return None
    from zoneinfo import ZoneInfo

    return instant.astimezone(ZoneInfo(status.timezone)).isoformat()


def status_view(status: ScheduleStatus) -> dict[str, Any]:
    """`GET /v1/business-hours/{id}/status`: open or closed at `at`, the next change (null if none
    within the search horizon) and the next opening (`at` itself while open)."""
    return {
        "id": status.schedule_id,
        "timezone": status.timezone,
        "at": iso_utc(status.at),
        "at_local": _local(status.at, status),
        "open": status.open,
        "state": "open" if status.open else "closed",
        "next_change": iso_utc(status.next_change) if status.next_change else None,
        "next_change_local": _local(status.next_change, status),
        "next_opening": iso_utc(status.next_opening) if status.next_opening else None,
        "next_opening_local": _local(status.next_opening, status),
    }
