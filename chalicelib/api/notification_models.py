"""The body of `POST /v1/notifications` and the JSON shape of a notification."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.consent import NOTIFICATION_CHANNELS
from chalicelib.domain.events import iso_utc
from chalicelib.domain.messages import Channel
from chalicelib.domain.notifications import MAX_SUBJECT_CHARS, Attempt, Notification
from chalicelib.domain.replies import MAX_EMAIL_BODY_CHARS

MAX_PARAMS = 50
MAX_PARAM_CHARS = 1000


class CustomerRef(BaseModel):
    """Exactly one of: the hub's customer id, a phone number, an email address (any written form;
    a phone or email nobody has yet creates the customer)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)

    @model_validator(mode="after")
    def _exactly_one(self) -> CustomerRef:
        given = [name for name in ("id", "phone", "email") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'id', 'phone' or 'email'")
        return self


class TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} template params")
        for key, item in value.items():
            if not key or len(key) > 64:
                raise ValueError("template param names must be 1 to 64 characters")
            if len(str(item)) > MAX_PARAM_CHARS:
                raise ValueError(f"template param values hold at most {MAX_PARAM_CHARS} characters")
        return value

    def string_params(self) -> dict[str, str]:
        return {key: _text(value) for key, value in self.params.items()}


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NotificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: CustomerRef
    text: str | None = Field(default=None, max_length=MAX_EMAIL_BODY_CHARS)
    template: TemplateRequest | None = None
    channels: list[str] | None = Field(default=None, min_length=1, max_length=len(NOTIFICATION_CHANNELS))
    urgent: bool = False
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        names = [c.value for c in NOTIFICATION_CHANNELS]
        cleaned = [str(item).strip().lower() for item in value]
        unknown = [item for item in cleaned if item not in names]
        if unknown:
            raise ValueError(f"unknown channel '{unknown[0][:32]}'; use {', '.join(names)}")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("each channel may appear once")
        return cleaned

    @model_validator(mode="after")
    def _something_to_send(self) -> NotificationRequest:
        if not (self.text or "").strip() and self.template is None:
            raise ValueError("give a non-empty 'text' or a 'template'")
        return self

    @property
    def channel_list(self) -> list[Channel] | None:
        return [Channel(name) for name in self.channels] if self.channels is not None else None

    def fingerprint_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    data = attempt.model_dump(mode="json", exclude_none=True)
    data["at"] = _iso(attempt.at)
    return data


def notification_view(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "status": notification.status.value,
        "customer_id": notification.customer_id,
        "conversation_id": notification.conversation_id,
        "channel": notification.channel.value if notification.channel else None,
        "message_id": notification.message_id,
        "channels": [channel.value for channel in notification.channels],
        "urgent": notification.urgent,
        "text": notification.text,
        "template": notification.template.model_dump(mode="json") if notification.template else None,
        "subject": notification.subject,
        "scheduled_for": _iso(notification.scheduled_for),
        "attempts": [attempt_view(attempt) for attempt in notification.attempts],
        "created_at": _iso(notification.created_at),
        "updated_at": _iso(notification.updated_at),
    }
