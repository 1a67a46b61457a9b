"""Automatic answers while no human can: the out-of-hours reply, and an optional acknowledgement
of a new conversation during open hours.

A queue may name a business-hours schedule (routing config `schedules`). While it is closed, a
customer whose conversation is in line for it hears, once per conversation cycle and on the
channel they wrote from, when the team is back: the next opening, in the customer's time zone if
known, else the schedule's; in the customer's language (`language` attribute), else the
schedule's default. Sent through the one outbound path, so never to an opted-out channel. The
conversation is queued either way.

AWS requests for a message to a closed queue: GetItem (the schedule), PutItem (the once-per-cycle
marker), then the outbound path's; nothing more for later messages of the cycle but the GetItem
and the PutItem that finds the marker.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from chalicelib.domain.business_hours import Schedule, is_open, next_opening
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.messages import Message
from chalicelib.domain.outbound import OutboundMessage, Purpose
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.observability import logger
from chalicelib.services import business_hours, outbound
from chalicelib.services.errors import SentNotRecorded
from chalicelib.services.routing_config import routing_config
from chalicelib.store import notifications as once

OUT_OF_HOURS = "out-of-hours"
ACKNOWLEDGEMENT = "acknowledgement"


def may_reply(queue_name: str) -> bool:
    """Whether `after_inbound` could send anything for this queue (nothing read): only a queue
    with business hours gets automatic replies."""
    return bool(routing_config().schedules.get(queue_name))


def schedule_for(queue_name: str) -> Schedule | None:
    schedule_id = routing_config().schedules.get(queue_name)
    return business_hours.load_schedule(schedule_id) if schedule_id else None


def language_of(customer: Customer, fallback: str) -> str:
    chosen = customer.attributes.get("language") or customer.attributes.get("lang")
    return str(chosen).strip().lower()[:8] if isinstance(chosen, str) and chosen.strip() else fallback


def text_in(texts: dict[str, str], language: str, fallback: str) -> str | None:
    """The text in `language` (`tr` for `tr-TR`), else in the fallback language, else any."""
    for candidate in (language, language.split("-")[0], fallback):
        if candidate in texts:
            return texts[candidate]
    return next(iter(texts.values()), None)


def opening_text(schedule: Schedule, customer: Customer, at: datetime) -> str:
    """When the team is back, as the customer reads it: in their zone if known, else the schedule's."""
    opening = next_opening(schedule, at)
    if opening is None:
        return "our next opening"
    zone_name = customer.timezone or schedule.timezone
    try:
        local = opening.astimezone(ZoneInfo(zone_name))
    except (ValueError, KeyError):
        local, zone_name = opening.astimezone(ZoneInfo(schedule.timezone)), schedule.timezone
    return f"{local:%Y-%m-%d %H:%M} ({zone_name})"


def after_inbound(
    customer: Customer, conversation: Conversation, message: Message, queue_name: str, now: datetime
) -> bool:
    """Answer automatically if the queue is closed (or acknowledge a new cycle, when configured).
    True when the queue is closed now. Best effort: the message is queued whatever happens here."""
    schedule = schedule_for(queue_name)
    if schedule is None:
        return False
    closed = not is_open(schedule, now)
    texts = routing_config().auto_replies
    kind, chosen = (OUT_OF_HOURS, texts.out_of_hours) if closed else (ACKNOWLEDGEMENT, texts.acknowledgement)
    if not chosen:
        return closed
    language = language_of(customer, schedule.default_language)
    text = text_in(chosen, language, schedule.default_language)
    if text is None:
        return closed
    # A cycle runs from the conversation's start, or its last resolution, to the next resolution.
    began = conversation.resolved_at or conversation.created_at
    marker = f"{conversation.id}:{began.isoformat()}"
    if not once.claim_once(kind, marker, now):
        return closed  # said once in this cycle already
    body = text.replace("{next_opening}", opening_text(schedule, customer, now))
    try:
        outbound.send(
            OutboundMessage(purpose=Purpose.AUTO_REPLY, text=body, channel=message.channel),
            customer,
            conversation,
            now=now,
        )
    except (Refused, ProviderUnavailable, SentNotRecorded) as exc:
        logger.info("automatic reply not sent", extra={"kind": kind, "reason": str(exc)[:200]})
    return closed
