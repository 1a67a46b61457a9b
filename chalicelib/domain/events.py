"""CRM events and the webhook endpoints they are delivered to (Standard Webhooks).

An event's id is the `webhook-id` a CRM deduplicates on. It is derived from what happened (the
event type and a key naming the state change, such as a message id), so a worker step that is
retried and emits the same event again produces the same id, and the CRM processes it once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from chalicelib.domain import clock

EVENT_TYPES: tuple[str, ...] = (
    "customer.created",
    "customer.updated",
    "message.created",
    "message.status_updated",
    "conversation.queued",
    "offer.created",
    "offer.accepted",
    "offer.expired",
    "offer.rejected",
    "offer.rescinded",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.resolved",
    "conversation.channel_linked",
    "conversation.control_changed",
    "sla.warning",
    "sla.breached",
    "conversation.escalated",
    "csat.requested",
    "csat.submitted",
)
ALL_EVENTS = "*"

# `evt_` + 26 characters of RFC 4648 base32 (A-Z, 2-7): never a '.', which the signed content
# `{id}.{timestamp}.{body}` uses as its delimiter.
EVENT_ID_PATTERN = r"^evt_[A-Z2-7]{26}$"


class UnknownEventType(ValueError):
    pass


def event_id(event_type: str, key: str) -> str:
    """The same id for the same (type, key), whichever process or retry computes it."""
    digest = hashlib.sha256(f"{event_type}\n{key}".encode()).digest()
    return "evt_" + base64.b32encode(digest).decode("ascii")[:26]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the REST API writes times."""
    return _utc(value).isoformat().replace("+00:00", "Z")


class CrmEvent(BaseModel):
    id: str = Field(pattern=EVENT_ID_PATTERN)
    type: str
    timestamp: datetime  # when it happened (a retried delivery keeps it; webhook-timestamp is the attempt's)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return _utc(value)


def new_event(event_type: str, data: dict[str, Any], key: str, timestamp: datetime | None = None) -> CrmEvent:
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown CRM event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
    if not key:
        raise ValueError("an event needs a key naming the state change (its id is derived from it)")
    return CrmEvent(
        id=event_id(event_type, key),
        type=event_type,
        timestamp=timestamp or clock.now(),
        data=data,
    )


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def payload(event: CrmEvent) -> bytes:
    """The body every endpoint receives: Standard Webhooks' recommended {type, timestamp, data},
    minified, keys of `data` sorted, ASCII only. The same event always gives the same bytes."""
    data = event.model_dump(mode="json")["data"]
    body = {"type": event.type, "timestamp": iso_utc(event.timestamp), "data": _sorted(data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


class WebhookEndpoint(BaseModel):
    """A CRM endpoint and the event types it receives (`["*"]`: all of them)."""

    id: str
    url: str
    events: list[str]
    secret: str = Field(repr=False)  # whsec_<base64>; never logged
    description: str | None = None
    created_at: datetime
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0

    def subscribes(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events
