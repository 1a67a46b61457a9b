"""Service-level targets, as pure decisions: which policy a conversation falls under, when each of
its targets is due (in calendar time or in business hours), and what state each clock is in.

A policy (routing config `sla`) applies per queue and priority and sets up to three targets:
- first response: the cycle's start → the first agent reply;
- next response: a customer message while an agent has answered before → the next agent reply;
- resolution: the cycle's start → the resolution.
Bots' and automatic messages never count as a response. Each clock warns at `warning_at` of its
target (default 80 %) and is missed at the target.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from chalicelib.domain.business_hours import Schedule, is_open, next_change
from chalicelib.domain.sla_clocks import ClockStatus, SlaClock, SlaTarget

MAX_BUSINESS_SEARCH = 400  # open/close changes walked through to find a business-hours deadline


class SlaPolicy(BaseModel):
    name: str
    queue: str | None = None  # None: every queue
    min_priority: int = Field(default=0, ge=0, le=9)
    first_response_seconds: int | None = Field(default=None, ge=1)
    next_response_seconds: int | None = Field(default=None, ge=1)
    resolution_seconds: int | None = Field(default=None, ge=1)
    business_hours: bool = False  # count time only while the queue's schedule is open
    warning_at: float = Field(default=0.8, gt=0, lt=1)
    # An accepted conversation with no agent reply for this long is escalated.
    escalate_after_seconds: int | None = Field(default=None, ge=1)
    # What an escalation does: re-queue to another agent, the same with a higher priority, or only
    # announce it (`conversation.escalated`, for a supervisor's webhook).
    escalation: Literal["requeue", "raise_priority", "notify"] = "notify"
    priority_step: int = Field(default=2, ge=1, le=9)

    def seconds_for(self, target: SlaTarget) -> int | None:
        return {
            SlaTarget.FIRST_RESPONSE: self.first_response_seconds,
            SlaTarget.NEXT_RESPONSE: self.next_response_seconds,
            SlaTarget.RESOLUTION: self.resolution_seconds,
        }[target]


def choose_policy(policies: list[SlaPolicy], queue: str, priority: int) -> SlaPolicy | None:
    """The first policy for the queue (or for every queue) whose priority the task reaches."""
    return next(
        (policy for policy in policies if policy.queue in (None, queue) and priority >= policy.min_priority), None
    )


def add_time(start: datetime, seconds: float, schedule: Schedule | None) -> datetime:
    """`start` plus `seconds` of calendar time, or of open time in `schedule`."""
    if schedule is None:
        return start + timedelta(seconds=seconds)
    left = timedelta(seconds=seconds)
    at = start
    for _ in range(MAX_BUSINESS_SEARCH):
        change = next_change(schedule, at)
        if is_open(schedule, at):
            if change is None or change - at >= left:
                return at + left
            left -= change - at
        elif change is None:
            break  # never opens again: the deadline cannot be reached in business time
        at = change
    return start + timedelta(seconds=seconds)  # a schedule without openings: calendar time


def clock(target: SlaTarget, policy: SlaPolicy, start: datetime, schedule: Schedule | None) -> SlaClock | None:
    seconds = policy.seconds_for(target)
    if seconds is None:
        return None
    hours = schedule if policy.business_hours else None
    return SlaClock(
        target=target,
        policy=policy.name,
        started_at=start,
        warn_at=add_time(start, seconds * policy.warning_at, hours),
        due_at=add_time(start, seconds, hours),
    )


def ended(current: SlaClock, at: datetime) -> SlaClock:
    """The clock once its target is reached at `at`: met in time, missed after."""
    status = ClockStatus.MET if at <= current.due_at else ClockStatus.MISSED
    return current.model_copy(update={"status": status, "ended_at": at})
