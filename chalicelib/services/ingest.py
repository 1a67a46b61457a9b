"""Inbound messages: recognise the customer, append to the one thread, hand off to routing.

A provider retry is always safe: the dedupe marker written in the same transaction as the
message makes the retry a no-op for storage, and the retry still (re)sends the routing task, so
a failure between the write and the enqueue is completed by the provider's next attempt.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from chalicelib import metrics, queue
from chalicelib.domain.customers import (
    Conversation,
    answers_from,
    customer_from_first_message,
    inbound_thread_message,
)
from chalicelib.domain.ids import new_id
from chalicelib.domain.messages import InboundMessage
from chalicelib.domain.routing_task import RoutingTask
from chalicelib.observability import logger
from chalicelib.services import link_redemption, verified_contacts
from chalicelib.services.errors import Unavailable
from chalicelib.store import thread

MAX_ATTEMPTS = 6


class IngestUnavailable(Unavailable):
    """The message could not be stored or handed off now; the provider should retry."""


@dataclass(frozen=True)
class IngestResult:
    message_id: str
    customer_id: str
    conversation_id: str
    duplicate: bool = False
    new_customer: bool = False
    notice: str | None = None  # to tell the sender at once (a refused link code)


def ingest(msg: InboundMessage) -> IngestResult:
    if msg.verified_phone:
        # Before filing: the message then lands in the thread of the customer who owns the phone.
        verified_contacts.bind(msg)
    notice = _redeem_link_code(msg)
    result = _store(msg)
    if msg.verified_phone and result.new_customer:
        # The shared contact was the sender's first message and just created their customer: the
        # verified phone joins it now (a crash before this line is completed by the retry's bind,
        # which then finds the customer).
        verified_contacts.bind(msg)
    metrics.inbound_message(msg.channel, duplicate=result.duplicate)
    if notice:
        result = IngestResult(**{**result.__dict__, "notice": notice})
    _enqueue(msg, result)
    logger.info(
        "inbound message stored",
        extra={
            "provider": msg.provider,
            "channel": msg.channel.value,
            "message_id": result.message_id,
            "customer_id": result.customer_id,
            "duplicate": result.duplicate,
            "new_customer": result.new_customer,
        },
    )
    return result


def _redeem_link_code(msg: InboundMessage) -> str | None:
    """A handoff link code binds this sender to the customer who was invited, before the message
    is filed, so it lands in that customer's thread. Costs nothing for messages without a code."""
    if not link_redemption.carries_code(msg):
        return None
    return link_redemption.redeem_from_message(msg)


def _store(msg: InboundMessage) -> IngestResult:
    # Minted once, on arrival: the thread's order is the order of these ids.
    message_id = new_id("msg")
    for attempt in range(MAX_ATTEMPTS):
        ref = thread.find_identity(msg.sender)
        try:
            if ref is None:
                customer = customer_from_first_message(new_id("cus"), new_id("conv"), msg)
                message = inbound_thread_message(message_id, customer.id, customer.conversation_id, msg)
                conversation = Conversation(
                    id=customer.conversation_id,
                    customer_id=customer.id,
                    channels=[msg.channel],
                    message_count=1,
                    inbound_count=1,
                    last_message_id=message.id,
                    last_message_at=message.created_at,
                    last_channel=msg.channel,
                    created_at=message.created_at,
                    updated_at=message.created_at,
                )
                thread.create_customer_with_message(msg.sender, customer, conversation, message)
                return IngestResult(message.id, customer.id, customer.conversation_id, new_customer=True)
            message = inbound_thread_message(message_id, ref.customer_id, ref.conversation_id, msg)
            business_address = msg.recipient_address if answers_from(msg) else None
            thread.append_inbound(ref, message, msg.profile_name, msg.reply_token, business_address)
            return IngestResult(message.id, ref.customer_id, ref.conversation_id)
        except thread.IdentityTaken:
            continue  # a concurrent first message created the customer: join it
        except thread.Contention:
            time.sleep(random.uniform(0, 0.02 * 2**attempt))
        except thread.DuplicateMessage:
            stored = thread.find_provider_message(msg.provider, msg.provider_message_id)
            if stored is None:
                continue
            return IngestResult(stored.message_id, stored.customer_id, stored.conversation_id, duplicate=True)
    raise IngestUnavailable("the thread is busy; retry")


def _enqueue(msg: InboundMessage, result: IngestResult) -> None:
    task = RoutingTask(
        customer_id=result.customer_id,
        conversation_id=result.conversation_id,
        message_id=result.message_id,
        channel=msg.channel,
        received_at=msg.received_at,
        new_customer=result.new_customer,
        text=(msg.subject + "\n" if msg.subject else "") + msg.body[:1500],
    )
    try:
        queue.send_routing_task(task.model_dump_json(), result.customer_id, msg.dedupe_key)
    except Exception as exc:
        logger.warning("routing hand-off failed; the provider's retry will redo it", extra={"error": str(exc)})
        raise IngestUnavailable("the message is stored but could not be handed to routing; retry") from exc
