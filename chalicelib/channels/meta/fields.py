"""What every part of the Meta channel shares: the provider's name, the bounds of its ids, and
small readers of its JSON that check every field before use (an event that fails one is skipped
on its own, never the whole batch)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.domain.messages import utcnow
from chalicelib.domain.webhook_items import Skipped

PROVIDER = "meta"
MAX_ID_CHARS = 512  # wamids are ~60 characters, Instagram mids ~200; anything longer is not Meta's
MAX_NAME_CHARS = 256
MAX_ERROR_CHARS = 500
# A status or message time more than this far ahead of our clock is not believed.
CLOCK_SKEW = timedelta(minutes=5)
PRINTABLE_ID = re.compile(r"[\x21-\x7e]+")


class Unusable(Exception):
    """One event cannot be used: it becomes a Skipped item, never an error for the batch."""


def guarded(kind: str, build: Any, *args: Any) -> list[Any]:
    """Run one event's parser; an unusable event becomes a Skipped item."""
    try:
        return list(build(*args))
    except Unusable as exc:
        return [Skipped(kind, str(exc))]
    except ValueError as exc:  # InvalidIdentity, a pydantic ValidationError: the event's data, not ours
        return [Skipped(kind, f"unusable: {type(exc).__name__}")]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_text(value: Any, limit: int | None = None) -> str:
    """A string field, or '' for anything else (numbers are not text: ids are always strings)."""
    if not isinstance(value, str):
        return ""
    return value[:limit] if limit is not None else value


def as_id(value: Any, what: str) -> str:
    """An id Meta sends as a string (Messenger page and user ids sometimes as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not value:
        raise Unusable(f"{what} is missing")
    if len(value) > MAX_ID_CHARS or not PRINTABLE_ID.fullmatch(value):
        raise Unusable(f"{what} is not a Meta id")
    return value


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def moment_of(value: Any, *, milliseconds: bool) -> datetime:
    """A Meta timestamp (seconds as a string for WhatsApp, milliseconds for Messenger), never in the
    future; the time of arrival when there is none."""
    number = as_number(value)
    now = utcnow()
    if number is None or number <= 0:
        return now
    seconds = number / 1000 if milliseconds else number
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return now
    return now if moment > now + CLOCK_SKEW else moment


def filename_of(url: str, title: str) -> str | None:
    """The attachment's file name: the title Meta gives, else the last part of the URL's path."""
    if title.strip():
        return title.strip()
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    last = unquote(path.rsplit("/", 1)[-1])[:255]
    return last or None
