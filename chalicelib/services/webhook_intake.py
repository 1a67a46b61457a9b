"""What a provider's webhook delivered, filed item by item, for every channel.

Each channel module turns its provider's request into items (domain/webhook_items.py): Meta, LINE
and WeChat batch several events in one request; Twilio, SendGrid and Telegram send one. This module
files each: messages through ingest, delivery receipts through delivery_status, follow/unfollow as
consent. A failure partway raises, the webhook answers 5xx, and the provider's retry redoes the
batch: everything already filed is recognised by its provider id and not filed twice.

A message whose link code was refused is answered at once, on the channel it came from, through
the one outbound path (best effort: the inbound message is stored either way).
"""

from __future__ import annotations

from chalicelib.domain.messages import Channel, InboundMessage, StatusUpdate
from chalicelib.domain.outbound import OutboundMessage, Purpose
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, WebhookItem
from chalicelib.observability import logger
from chalicelib.services import outbound
from chalicelib.services.consent import set_consent
from chalicelib.services.delivery_status import record_status
from chalicelib.services.errors import SentNotRecorded, is_storage_failure
from chalicelib.services.ingest import ingest
from chalicelib.store import customers as customer_store
from chalicelib.store import thread

LINK_REFUSAL_SUBJECT = "About your link code"


def process(items: list[WebhookItem]) -> BatchOutcome:
    outcome = BatchOutcome()
    for item in items:
        if isinstance(item, InboundMessage):
            result = ingest(item)
            outcome.stored.append(result.message_id)
            outcome.duplicates += int(result.duplicate)
            if result.notice and not result.duplicate:
                outcome.notices.append((item, result.customer_id, result.notice))
        elif isinstance(item, StatusUpdate):
            record_status(item)
        elif isinstance(item, ConsentChange):
            _apply_consent(item)
        else:
            outcome.skipped.append(f"{item.kind}: {item.reason}")
    if outcome.skipped:
        logger.info("webhook events skipped", extra={"skipped": outcome.skipped[:20]})
    for message, customer_id, notice in outcome.notices:
        tell(message, notice, customer_id)
    return outcome


def _apply_consent(change: ConsentChange) -> None:
    ref = thread.find_identity(change.sender)
    if ref is None:
        return  # never wrote: nothing to record until they do
    set_consent(ref.customer_id, change.channel, opted_out=change.opted_out, at=change.occurred_at)
    logger.info("consent changed", extra={"channel": change.channel.value, "opted_out": change.opted_out})


def tell(message: InboundMessage, text: str, customer_id: str) -> None:
    """Answer the sender at once on the channel they wrote from (a reply token it uses is claimed
    first, so the next agent reply does not try a spent one). Best effort."""
    try:
        customer = customer_store.get_customer(customer_id)
        conversation = thread.get_conversation(customer.conversation_id) if customer else None
        if customer is None or conversation is None:
            return
        outbound.send(
            OutboundMessage(
                purpose=Purpose.LINK_REFUSAL,
                text=text,
                channel=message.channel,
                subject=LINK_REFUSAL_SUBJECT if message.channel is Channel.EMAIL else None,
            ),
            customer,
            conversation,
        )
    except (Refused, ProviderUnavailable, SentNotRecorded) as exc:
        logger.warning("notice to the sender not sent", extra={"error": str(exc)})
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("notice to the sender not sent", extra={"error": type(exc).__name__})
