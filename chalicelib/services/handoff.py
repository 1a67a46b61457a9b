"""The handoff packet: what an agent needs to pick up a conversation without asking the customer
again (`GET /v1/conversations/{id}/handoff`).

It carries every message of the current cycle on every channel (not the last 10), who controls
the conversation and what the last controller handed over (its reason, summary, the fields it
collected and up to 16 KB of metadata), the customer's identities per channel, which channels'
windows are open now, the consent state per channel, and the cycle's SLA clocks.

AWS requests: GetItem conversation, GetItem customer, one Query per 100 messages of the cycle
(at most MAX_MESSAGES messages; `truncated` says when there were more).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.api.models import conversation_view, customer_view, message_view
from chalicelib.channels import registry
from chalicelib.domain.channel_rules import window_open
from chalicelib.domain.customers import Conversation, ConversationStatus
from chalicelib.domain.ids import id_floor
from chalicelib.domain.messages import Message, utcnow
from chalicelib.domain.replies import RefusalKind, Refused, channels_for, provider_for
from chalicelib.store import customers as customer_store
from chalicelib.store import thread

PAGE = 100
MAX_MESSAGES = 1000


def cycle_start(conversation: Conversation) -> datetime:
    """When the current cycle began: the last resolution, for a conversation that came back after
    it; else the conversation's start."""
    if conversation.resolved_at is not None and conversation.status is not ConversationStatus.RESOLVED:
        return conversation.resolved_at
    return conversation.created_at


def packet(conversation_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"no conversation '{conversation_id}'")
    customer = customer_store.get_customer(conversation.customer_id)
    if customer is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"the customer of '{conversation_id}' no longer exists")
    messages, truncated = _cycle_messages(conversation)
    control = conversation.control
    metadata = dict(control.metadata) if control else {}
    identities: dict[str, list[str]] = {}
    for identity in customer.identities:
        identities.setdefault(str(identity.kind), []).append(identity.value)
    channels = {}
    for channel in channels_for(customer):
        rules = registry.channel(provider_for(channel, customer.whatsapp_provider)).RULES[channel.value]
        opted_out = customer.opted_out.get(channel.value)
        channels[channel.value] = {
            "window_open": window_open(rules, customer, channel, now),
            "template_only_when_closed": rules.template_outside_window,
            "opted_out_at": opted_out.isoformat().replace("+00:00", "Z") if opted_out else None,
            "last_inbound_at": _iso(customer.last_inbound_by_channel.get(channel.value)),
        }
    return {
        "conversation": conversation_view(conversation),
        "customer": customer_view(customer),
        "cycle_started_at": _iso(cycle_start(conversation)),
        "messages": [message_view(message) for message in messages],
        "truncated": truncated,
        "control": {
            "controller": control.controller.model_dump(mode="json") if control else None,
            "reason": control.reason if control else None,
            "summary": metadata.get("summary"),
            "fields": metadata.get("fields", {}),
            "metadata": metadata,
        },
        "identities": identities,
        "channels": channels,
        "sla": conversation.sla.model_dump(mode="json")["clocks"] if conversation.sla else {},
    }


def _cycle_messages(conversation: Conversation) -> tuple[list[Message], bool]:
    after = id_floor("msg", cycle_start(conversation))
    found: list[Message] = []
    more = True
    while more and len(found) < MAX_MESSAGES:
        page, more = thread.list_messages(conversation.id, min(PAGE, MAX_MESSAGES - len(found)), after)
        found.extend(page)
        if not page:
            break
        after = page[-1].id
    return found, more


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
