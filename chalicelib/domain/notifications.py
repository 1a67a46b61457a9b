"""Proactive notifications, as pure decisions: what a notification is, and what to send on each
channel it may use.

A notification names its customer, its content (free text, a template, or both) and an ordered
list of channels. The hub sends it on the first channel the customer has consented to, can be
reached on, and the content can go out on right now (WhatsApp outside its 24-hour window takes
only a pre-approved template). If that delivery fails later (a status callback says failed or
undelivered), it falls back to the next channel in the list. Every channel is tried at most once.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.channel_rules import window_open as channel_window_open
from chalicelib.domain.consent import Block, channel_block
from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import provider_for, recipient_for

MAX_SUBJECT_CHARS = 998


class NotificationStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for the customer's quiet hours to end
    SENDING = "sending"  # one worker holds it and is sending (a short-lived claim)
    SENT = "sent"  # a provider accepted it on `channel`
    FAILED = "failed"  # no channel left that could take it


class AttemptStatus(StrEnum):
    SKIPPED = "skipped"  # the channel could not be used (consent, address, window, template, config)
    SENT = "sent"  # the provider accepted it
    REJECTED = "rejected"  # the provider refused it at once (stored as a failed message)
    UNAVAILABLE = "unavailable"  # the provider could not be reached; nothing was sent
    UNDELIVERED = "undelivered"  # accepted, then reported failed or undelivered


class Attempt(BaseModel):
    channel: Channel
    status: AttemptStatus
    at: datetime
    code: str | None = None  # why it was skipped: opted_out, no_address, whatsapp_window_closed, ...
    reason: str | None = None
    message_id: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None


class TemplateRef(BaseModel):
    name: str
    params: dict[str, str] = Field(default_factory=dict)


class Notification(BaseModel):
    id: str
    customer_id: str
    conversation_id: str
    channels: list[Channel]
    text: str | None = None
    template: TemplateRef | None = None
    subject: str | None = None
    urgent: bool = False
    status: NotificationStatus
    channel: Channel | None = None  # where it was (last) sent
    message_id: str | None = None  # the thread message of that send
    attempts: list[Attempt] = Field(default_factory=list)
    scheduled_for: datetime | None = None
    retries: int = 0  # times it was held again because no provider could be reached
    created_at: datetime
    updated_at: datetime
    version: int = 0  # every write is conditional on it

    def remaining_channels(self) -> list[Channel]:
        """The channels after the last one attempted, in order (each is tried at most once)."""
        tried = {attempt.channel for attempt in self.attempts}
        if not self.attempts:
            return list(self.channels)
        last = self.attempts[-1].channel
        after = self.channels[self.channels.index(last) + 1 :] if last in self.channels else []
        return [channel for channel in after if channel not in tried]


class NotificationDue(BaseModel):
    """Timer: a notification held for quiet hours is due now."""

    type: Literal["notification_due"] = "notification_due"
    notification_id: str


# --- Templates --------------------------------------------------------------------------------------


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TextTemplate:
    text: str
    subject: str | None = None


@dataclass(frozen=True)
class TemplateCatalog:
    """`TWILIO_WHATSAPP_TEMPLATES` (name → Content SID) and `NOTIFICATION_TEMPLATES` (name → text
    with {param} placeholders, or {"text": ..., "subject": ...} for email)."""

    whatsapp: dict[str, str] = field(default_factory=dict)
    text: dict[str, TextTemplate] = field(default_factory=dict)

    @classmethod
    def from_json(cls, whatsapp_json: str, text_json: str) -> TemplateCatalog:
        whatsapp = _json_object(whatsapp_json, "TWILIO_WHATSAPP_TEMPLATES")
        texts = _json_object(text_json, "NOTIFICATION_TEMPLATES")
        for name, sid in whatsapp.items():
            if not isinstance(sid, str) or not sid.startswith("HX"):
                raise TemplateError(f"TWILIO_WHATSAPP_TEMPLATES['{name}'] must be a Content SID ('HX...')")
        parsed: dict[str, TextTemplate] = {}
        for name, value in texts.items():
            if isinstance(value, str):
                parsed[name] = TextTemplate(value)
            elif isinstance(value, dict) and isinstance(value.get("text"), str):
                subject = value.get("subject")
                parsed[name] = TextTemplate(value["text"], subject if isinstance(subject, str) else None)
            else:
                raise TemplateError(f"NOTIFICATION_TEMPLATES['{name}'] must be a text or {{'text', 'subject'}}")
            for text in (parsed[name].text, parsed[name].subject or ""):
                placeholders(text)  # refuse a malformed template when the catalog is read
        return cls(whatsapp=dict(whatsapp), text=parsed)


def _json_object(raw: str, name: str) -> dict[str, Any]:
    if not (raw or "").strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise TemplateError(f"{name} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise TemplateError(f"{name} must be a JSON object mapping template names")
    return value


def placeholders(template: str) -> list[str]:
    """The {names} a text template uses; only plain names (no attribute or index access)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"malformed template text ({exc})") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"template placeholder '{{{name}}}' must be a plain {{name}}")
        names.append(name)
    return names


def render(template: str, params: dict[str, str]) -> str:
    missing = [name for name in placeholders(template) if name not in params]
    if missing:
        raise TemplateError(f"the template needs the params {', '.join(sorted(set(missing)))}")
    return template.format_map(params)


# --- Deciding what to send ------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One send: to whom, on which channel, with what."""

    channel: Channel
    recipient: str
    body: str  # what the thread shows (for a WhatsApp template: its text version, else a label)
    subject: str | None = None
    content_sid: str | None = None  # a WhatsApp template (Twilio Content API)
    content_variables: dict[str, str] | None = None
    whatsapp_provider: str | None = None  # "meta" for customers on WhatsApp's Cloud API
    meta_template: str | None = None  # an approved template's name (Cloud API), params in key order

    @property
    def provider(self) -> str:
        return provider_for(self.channel, self.whatsapp_provider)


def plan_delivery(
    notification: Notification,
    customer: Customer,
    channel: Channel,
    now: datetime,
    catalog: TemplateCatalog,
    *,
    business_name: str,
    rules: ChannelRules,
    check_window: bool = True,
) -> Delivery | Block:
    """What to send on `channel` now, or why nothing can be. `rules` are the channel's, as the
    module that carries it states them. `check_window=False` leaves the windows to the moment of
    sending (a notification held for quiet hours)."""
    block = channel_block(customer, channel)
    if block is not None:
        return block
    recipient = recipient_for(channel, customer)
    template = notification.template
    through_meta = channel is Channel.WHATSAPP and customer.whatsapp_provider == "meta"
    window_open = channel_window_open(rules, customer, channel, now)
    if not rules.template_outside_window and check_window and not window_open:
        # A notification is no human answering: Meta's HUMAN_AGENT tag does not cover it.
        assert rules.window is not None
        hours = int(rules.window.total_seconds() // 3600)
        return Block(
            "messaging_window_closed",
            f"{rules.name} allows a business to write only within {hours} hours of the customer's last message",
        )
    if through_meta and template is not None and not window_open:
        return Delivery(
            channel,
            recipient,
            _template_preview(template, catalog),
            content_variables=dict(template.params),
            whatsapp_provider="meta",
            meta_template=template.name,
        )
    if through_meta and check_window and not window_open:
        return Block(
            "whatsapp_window_closed",
            "the customer is outside WhatsApp's 24-hour window, so only an approved template can be sent; "
            "give a 'template' with the template's name in WhatsApp Manager",
        )
    if channel is Channel.WHATSAPP and not through_meta:
        if template is not None and template.name in catalog.whatsapp:
            return Delivery(
                channel,
                recipient,
                _template_preview(template, catalog),
                content_sid=catalog.whatsapp[template.name],
                content_variables=dict(template.params),
            )
        if check_window and not window_open:
            needs = (
                f"template '{template.name}' has no Content SID in TWILIO_WHATSAPP_TEMPLATES"
                if template is not None
                else "give a 'template' mapped in TWILIO_WHATSAPP_TEMPLATES"
            )
            last = customer.last_inbound_by_channel.get(Channel.WHATSAPP.value)
            when = f"last wrote on WhatsApp at {last.isoformat()}" if last else "never wrote on WhatsApp"
            return Block(
                "whatsapp_window_closed",
                f"the customer {when}, so outside the 24-hour window only a template can be sent; {needs}",
            )
    content = _content(notification, channel, catalog, business_name)
    if isinstance(content, Block):
        return content
    body, subject = content
    limit = rules.body_chars
    if len(body) > limit:
        return Block(
            "body_too_long", f"a {channel.value} message holds at most {limit} characters; this one has {len(body)}"
        )
    return Delivery(
        channel,
        recipient,
        body,
        subject=subject if channel is Channel.EMAIL else None,
        whatsapp_provider="meta" if through_meta else None,
    )


def _template_preview(template: TemplateRef, catalog: TemplateCatalog) -> str:
    """What the thread shows for a WhatsApp template: its text version, else a label."""
    preview = catalog.text.get(template.name)
    body = _render_or_none(preview.text, template.params) if preview else None
    return body or f"[WhatsApp template '{template.name}']"


def _render_or_none(text: str, params: dict[str, str]) -> str | None:
    try:
        return render(text, params)
    except TemplateError:
        return None


def _content(
    notification: Notification, channel: Channel, catalog: TemplateCatalog, business_name: str
) -> tuple[str, str | None] | Block:
    """(body, subject) from the text template when there is one for it, else the free text."""
    template = notification.template
    subject = notification.subject
    if template is not None and template.name in catalog.text:
        chosen = catalog.text[template.name]
        try:
            body = render(chosen.text, template.params)
            if subject is None and chosen.subject:
                subject = render(chosen.subject, template.params)
        except TemplateError as exc:
            return Block("template_params", f"template '{template.name}': {exc}")
    elif notification.text and notification.text.strip():
        body = notification.text
    else:
        assert template is not None  # the request model requires text or a template
        return Block(
            "template_not_available",
            f"template '{template.name}' has no text in NOTIFICATION_TEMPLATES for {channel.value} "
            "and no 'text' was given",
        )
    if subject is None:
        subject = f"A message from {business_name}"
    return body, " ".join(subject.split())[:MAX_SUBJECT_CHARS]
