"""Business hours schedules behind the REST API, and their status at an instant.

The decisions themselves (open or not, the next change, the next opening) are the pure
functions of chalicelib.domain.business_hours; a use case that only needs them for a schedule
it already holds calls those directly, and `load_schedule` reads one by id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from chalicelib.api.business_hours_models import BusinessHoursPut
from chalicelib.api.reply_models import validation_problem
from chalicelib.domain.business_hours import (
    SCHEDULE_ID_PATTERN,
    Schedule,
    ScheduleStatus,
    parse_instant,
    schedule_status,
)
from chalicelib.domain.messages import utcnow
from chalicelib.services.errors import InvalidRequest, NotFound
from chalicelib.store import business_hours as store

_SCHEDULE_ID = re.compile(SCHEDULE_ID_PATTERN)


def _checked(schedule_id: str) -> str:
    if not isinstance(schedule_id, str) or not _SCHEDULE_ID.match(schedule_id):
        raise InvalidRequest("business hours ids are 1 to 64 letters, digits, '_' or '-'")
    return schedule_id


def put_schedule(schedule_id: str, body: Mapping[str, Any] | BusinessHoursPut) -> tuple[Schedule, bool]:
    """Create or replace a schedule from its JSON body; True when created."""
    _checked(schedule_id)
    try:
        request = body if isinstance(body, BusinessHoursPut) else BusinessHoursPut.model_validate(dict(body))
        schedule = request.schedule(schedule_id, utcnow())
    except ValidationError as exc:
        raise InvalidRequest(validation_problem(exc)) from None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return schedule, store.put_schedule(schedule)


def load_schedule(schedule_id: str) -> Schedule | None:
    """The schedule, or None if there is none (or the id could never name one)."""
    return store.get_schedule(schedule_id) if isinstance(schedule_id, str) and _SCHEDULE_ID.match(schedule_id) else None


def get_schedule(schedule_id: str) -> Schedule:
    schedule = store.get_schedule(_checked(schedule_id))
    if schedule is None:
        raise NotFound(f"no business hours '{schedule_id}'")
    return schedule


def delete_schedule(schedule_id: str) -> None:
    if not store.delete_schedule(_checked(schedule_id)):
        raise NotFound(f"no business hours '{schedule_id}'")


def status(schedule_id: str, at: datetime | str | None = None) -> ScheduleStatus:
    """Open or closed at `at` (an aware datetime or an ISO 8601 instant; default now), the next
    change and the next opening."""
    instant = _instant(at)
    return schedule_status(get_schedule(schedule_id), instant)


def _instant(at: datetime | str | None) -> datetime:
    if at is None:
        return utcnow()
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidRequest("'at' must be timezone-aware")
        return at
    try:
        return parse_instant(at)
    except ValueError as exc:
        raise InvalidRequest(f"'at': {exc}") from None
