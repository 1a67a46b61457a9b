"""A conversation's service-level clocks, as stored on it (policies and deadlines: domain/sla.py)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class SlaTarget(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class ClockStatus(StrEnum):
    ACTIVE = "active"
    MET = "met"
    MISSED = "missed"
    STOPPED = "stopped"  # no longer counted (resolved before a response was due)


class SlaClock(BaseModel):
    target: SlaTarget
    policy: str
    started_at: datetime
    warn_at: datetime
    due_at: datetime
    status: ClockStatus = ClockStatus.ACTIVE
    ended_at: datetime | None = None


class SlaState(BaseModel):
    """The clocks of a conversation's current cycle, stored on the conversation."""

    cycle: str  # the cycle's start (ISO 8601): a new cycle gets new clocks
    clocks: dict[str, SlaClock] = Field(default_factory=dict)
    responded: bool = False  # an agent has answered in this cycle (next-response clocks start)
    last_agent_reply_at: datetime | None = None
    version: int = 0
