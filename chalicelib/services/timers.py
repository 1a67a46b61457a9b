"""Timers as SQS delays: a timer longer than SQS's 15-minute maximum delay is re-sent until due."""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib import aws
from chalicelib.config import settings
from chalicelib.domain.messages import utcnow
from chalicelib.domain.timers import Timer, TimerMessage

MAX_DELAY_SECONDS = 900


def schedule(message: TimerMessage, due_at: datetime) -> None:
    timer = Timer(due_at=due_at, message=message)
    delay = max(0, min(MAX_DELAY_SECONDS, int((due_at - utcnow()).total_seconds() + 0.999)))
    aws.client("sqs").send_message(
        QueueUrl=settings().timer_queue_url, MessageBody=timer.model_dump_json(), DelaySeconds=delay
    )


def schedule_in(message: TimerMessage, seconds: float) -> None:
    schedule(message, utcnow() + timedelta(seconds=seconds))


def due(timer: Timer) -> bool:
    """True when the timer should fire now; otherwise it is sent again for the time left."""
    if timer.due_at <= utcnow() + timedelta(milliseconds=500):
        return True
    schedule(timer.message, timer.due_at)
    return False
