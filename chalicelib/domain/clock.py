"""The hub's clock. Every time the hub records (message and cycle ids, event times, offers,
timers) reads `now()`, so a scenario test can replay a day with known times by moving this one
clock (`clock.now` is looked up on every call); production never changes it."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return int(now().timestamp() * 1000)
