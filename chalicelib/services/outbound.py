"""The one way out: every message the hub sends leaves through `send`.

Agent and bot replies, notifications, consent answers, link invitations and refusals, and the
offline fallback all describe what they want sent as a `domain.outbound.OutboundMessage`; this
module alone calls a channel's send. For each message it:

1. chooses the channel (the one asked for, else the customer's current one) and plans the send
   (domain/outbound.py): consent (never a channel the customer opted out of), the channel's rules
   (windows, templates, reply tokens, size limits), the provider (WhatsApp through Twilio or
   Meta), the recipient, the email subject and threading;
2. refuses when the provider is not configured (503, nothing sent);
3. sends from the business address the customer last wrote to on that channel (else the
   configured sender), with the email unsubscribe footer and List-Unsubscribe headers, a claimed
   reply token, and a retry key derived from the request's Idempotency-Key;
4. checkpoints the provider's answer on the Idempotency-Key claim, records the message in the
   thread (with a notification's new state, when it is one, in the same transaction), applies
   status callbacks that beat the recording, and emits `message.created` once (fixed event id).

AWS requests for a send to a known customer: a Query for the customer's latest email (email
replies only), UpdateItem (reply token claim, LINE only), UpdateItem (checkpoint, with a key),
TransactWriteItems (message + provider-id lookup + conversation [+ notification]), Query (early
statuses, when the provider gave an id), SQS SendMessageBatch (message.created), and analytics'
GetItem of the cycle plus, for an agent's or a bot's reply in an open cycle, one
TransactWriteItems (services/analytics.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib import metrics
from chalicelib.api.models import agent_view, conversation_view, customer_view, message_view
from chalicelib.channels import registry
from chalicelib.channels.base import Outgoing
from chalicelib.config import settings
from chalicelib.domain.agents import Agent
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.ids import id_datetime, new_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Media, Message, utcnow
from chalicelib.domain.outbound import (
    OutboundMessage,
    SenderType,
    choose,
    email_body,
    ordered_parameters,
    plan,
    written_by,
)
from chalicelib.domain.replies import (
    InboundEmail,
    ProviderRejected,
    RefusalKind,
    Refused,
    ReplyPlan,
    SentMessage,
    provider_for,
)
from chalicelib.observability import logger
from chalicelib.services import delivery_status, email_unsubscribe, events
from chalicelib.services.errors import SentNotRecorded, is_storage_failure
from chalicelib.services.idempotency import Claim, checkpoint
from chalicelib.store import access_tokens, thread
from chalicelib.store import customers as customer_store
from chalicelib.store.table import TransactionCancelled
from chalicelib.store.thread import NotificationSend

RECORD_ATTEMPTS = 4


@dataclass(frozen=True)
class Companion:
    """What goes with a message that belongs to something else (a notification): writes in the
    same transaction as the message, and data added to its `message.created` event."""

    writes: NotificationSend
    event_data: dict[str, Any] = field(default_factory=dict)
    message_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivered:
    """A message a provider saw: accepted (`rejected` False) or refused for good (stored as failed)."""

    message: Message
    conversation: Conversation

    @property
    def rejected(self) -> bool:
        return self.message.status is DeliveryStatus.FAILED and self.message.provider_message_id is None


class AnnounceFailed(SentNotRecorded):
    """The message is sent and recorded, but its `message.created` event could not be queued."""

    def __init__(self, message: str, delivered: Delivered) -> None:
        super().__init__(message)
        self.delivered = delivered


class NotRecorded(SentNotRecorded):
    """The provider has the message but the thread does not (yet)."""

    def __init__(self, message: str, sent: Message) -> None:
        super().__init__(message)
        self.sent = sent


def send(
    request: OutboundMessage,
    customer: Customer,
    conversation: Conversation,
    *,
    agent: Agent | None = None,
    claim: Claim | None = None,
    companion: Callable[[Message], Companion] | None = None,
    now: datetime | None = None,
) -> Delivered:
    """Send one message. Raises Refused (nothing sent), ProviderUnavailable (nothing sent),
    NotRecorded / AnnounceFailed (sent; finish with `finish`, never send again), or a storage
    failure from reading before the send (nothing sent)."""
    now = now or utcnow()
    channel = choose(request, customer)
    latest = _latest_email(customer, conversation) if channel is Channel.EMAIL else None
    module = registry.channel(provider_for(channel, customer.whatsapp_provider))
    planned = plan(request, customer, channel, now, latest, module.RULES[channel.value])
    missing = module.missing_settings(channel.value)
    if missing:
        raise Refused(
            RefusalKind.NOT_CONFIGURED,
            "channel_not_configured",
            f"{channel.value} messages are not configured: set {', '.join(missing)}",
        )
    message_id = new_id("msg")
    outgoing = _outgoing(request, planned, customer, message_id, claim)
    try:
        sent = _send(outgoing, module)
    except ProviderRejected as exc:
        message = _message(message_id, request, customer, conversation, planned, agent).model_copy(
            update={
                "status": DeliveryStatus.FAILED,
                "sender_address": outgoing.sender,
                "error_code": exc.code,
                "error_message": exc.message,
                "status_updated_at": id_datetime(message_id),
            }
        )
    else:
        message = _message(message_id, request, customer, conversation, planned, agent).model_copy(
            update={
                "status": sent.status,
                "provider_message_id": sent.provider_message_id,
                "sender_address": sent.sender_address,
            }
        )
    logger.info(
        "message refused by the provider" if message.status is DeliveryStatus.FAILED else "message sent",
        extra={
            "message_id": message.id,
            "purpose": request.purpose.value,
            "channel": message.channel.value,
            "provider": message.provider,
            "status": message.status.value,
            "error_code": message.error_code,
        },
    )
    # From here on the provider has the message: it is never sent again.
    extra = companion(message) if companion else None
    try:
        if claim is not None:
            checkpoint(claim, message)
        record(message, extra.writes if extra else None)
    except Exception as exc:
        if not (is_storage_failure(exc) or (extra is not None and isinstance(exc, extra.writes.lost))):
            raise
        logger.error(
            "message sent but not recorded",
            extra={"message_id": message.id, "provider_message_id": message.provider_message_id, "error": str(exc)},
        )
        raise NotRecorded(
            f"the message was handed to {message.provider} as {message.id} but could not be recorded yet", message
        ) from exc
    delivered = Delivered(message, counted(conversation, message))
    announce(delivered, customer, agent, extra)
    return delivered


def addressee(conversation_id: str) -> tuple[Conversation, Customer]:
    """The conversation a message is for and its customer (2 GetItem); Refused when either is gone."""
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"no conversation '{conversation_id}'")
    customer = customer_store.get_customer(conversation.customer_id)
    if customer is None:
        raise Refused(
            RefusalKind.NOT_FOUND, "not_found", f"the customer of conversation '{conversation_id}' no longer exists"
        )
    return conversation, customer


def record(message: Message, notification: NotificationSend | None = None) -> None:
    """Add the message to the thread (a message stored already, by an earlier attempt, is left as
    it is), then apply any status its provider reported before it was recorded."""
    for attempt in range(RECORD_ATTEMPTS):
        try:
            thread.record_outbound(message, notification)
            break
        except thread.AlreadyRecorded:
            break
        except TransactionCancelled as exc:
            if not exc.conflicted or attempt == RECORD_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.02 * 2**attempt))
    if message.provider_message_id:
        delivery_status.catch_up(str(message.provider), message.provider_message_id)


def finish(message: Message, agent: Agent | None = None) -> Delivered:
    """Record and announce a message a provider took but the hub did not record (a repeat of the
    request, found through its Idempotency-Key checkpoint). Raises LookupError when its
    conversation or customer is gone, storage failures as they come."""
    record(message)
    conversation = thread.get_conversation(message.conversation_id)
    customer = customer_store.get_customer(message.customer_id)
    if conversation is None or customer is None:
        raise LookupError("the conversation or customer of a sent message is gone")
    delivered = Delivered(message, conversation)
    announce(delivered, customer, agent, None)
    return delivered


def announce(delivered: Delivered, customer: Customer, agent: Agent | None, extra: Companion | None) -> None:
    """`message.created`, keyed by the message id: a repeat is the same event."""
    data: dict[str, Any] = {
        "customer": customer_view(customer),
        "conversation": conversation_view(delivered.conversation),
        "message": {**message_view(delivered.message), **(extra.message_data if extra else {})},
    }
    if agent is not None:
        data["agent"] = agent_view(agent)
    if extra is not None:
        data.update(extra.event_data)
    try:
        events.emit_many([("message.created", data, delivered.message.id)])
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.error("message.created not queued", extra={"message_id": delivered.message.id})
        raise AnnounceFailed(
            f"the message {delivered.message.id} is sent and recorded but the CRM event could not be queued yet",
            delivered,
        ) from exc


def counted(conversation: Conversation, message: Message) -> Conversation:
    """The conversation as the thread write left it (saves reading it again)."""
    channels = list(conversation.channels)
    if message.channel not in channels:
        channels.append(message.channel)
    return conversation.model_copy(
        update={
            "message_count": conversation.message_count + 1,
            "outbound_count": conversation.outbound_count + 1,
            "channels": channels,
            "last_message_id": message.id,
            "last_message_at": message.created_at,
            "updated_at": message.created_at,
        }
    )


# --- Steps -------------------------------------------------------------------------------------


def _latest_email(customer: Customer, conversation: Conversation) -> InboundEmail | None:
    if Channel.EMAIL.value not in customer.last_inbound_by_channel:
        return None  # the customer never emailed: no query needed
    latest = thread.latest_inbound_email(conversation.id)
    return InboundEmail(subject=latest.subject, threading=latest.email) if latest else None


def _outgoing(
    request: OutboundMessage, planned: ReplyPlan, customer: Customer, message_id: str, claim: Claim | None
) -> Outgoing:
    channel = planned.channel
    body = planned.body
    headers: dict[str, str] = {}
    if channel is Channel.EMAIL:
        footer, headers = _unsubscribe(customer)
        body = email_body(planned, footer)
    template = request.template
    token = planned.reply_token
    if token and not customer_store.take_reply_token(customer.id, token):
        token = None  # single use: another send took it first
    params = template.params if template else {}
    return Outgoing(
        channel=channel.value,
        recipient=planned.recipient,
        # A Twilio template carries its own text; `body` is then only what the thread shows.
        body="" if template and template.content_sid and planned.provider == "twilio" else body,
        hub_message_id=message_id,
        media_urls=tuple(planned.media_urls),
        timeout=settings().provider_timeout_seconds,
        sender=customer.business_addresses.get(channel.value) or None,
        recipient_name=(customer.name or customer.provider_names.get(Channel.EMAIL.value))
        if channel is Channel.EMAIL
        else None,
        subject=planned.subject,
        in_reply_to=planned.email.in_reply_to if planned.email else None,
        references=tuple(planned.email.references) if planned.email else (),
        headers=headers,
        message_tag=planned.message_tag,
        reply_token=token,
        retry_key=f"{customer.id}:{claim.key}" if claim else None,
        template=(template.meta_name if planned.provider == "meta" else template.content_sid) if template else None,
        template_language=settings().meta_whatsapp_template_language if template and template.meta_name else None,
        template_parameters=ordered_parameters(params),
        template_variables=dict(params) if template and template.content_sid else {},
        choices=() if template else request.choices,
    )


def _unsubscribe(customer: Customer) -> tuple[str, dict[str, str]]:
    """The footer every email ends with and its List-Unsubscribe headers (RFC 2369, RFC 8058)."""
    return email_unsubscribe.unsubscribe_footer(customer.id), email_unsubscribe.unsubscribe_headers(customer.id)


@metrics.counts_sends
def _send(outgoing: Outgoing, module: Any) -> SentMessage:
    sent: SentMessage = module.send(outgoing, tokens=access_tokens)
    return sent


def _message(
    message_id: str,
    request: OutboundMessage,
    customer: Customer,
    conversation: Conversation,
    planned: ReplyPlan,
    agent: Agent | None,
) -> Message:
    sender = request.sender
    return Message(
        id=message_id,
        conversation_id=conversation.id,
        customer_id=customer.id,
        channel=planned.channel,
        direction=Direction.OUTBOUND,
        body=planned.body,
        subject=planned.subject,
        status=DeliveryStatus.QUEUED,
        created_at=id_datetime(message_id),
        provider=planned.provider,
        recipient_address=planned.recipient,
        media=[Media(url=url) for url in planned.media_urls],
        email=planned.email,
        agent_id=agent.id if agent else (sender.id if sender.type is SenderType.AGENT else None),
        sent_by=written_by(request.purpose),
        choices=[{"id": choice_id, "label": label} for choice_id, label in request.choices],
    )
