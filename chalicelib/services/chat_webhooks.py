"""What a chat app's webhook delivered, handled item by item.

Meta, LINE and WeChat batch several events in one request, and Telegram sends one update per
request; the channel modules turn any of them into a list of items, and this module files each:
messages through ingest, delivery receipts through delivery_status, follow/unfollow as consent.
A failure partway raises, the webhook answers 5xx, and the provider's retry redoes the batch:
everything already filed is recognised by its provider id and not filed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.domain.identity import Identity
from chalicelib.domain.messages import Channel, InboundMessage, StatusUpdate
from chalicelib.observability import logger


@dataclass(frozen=True)
class ConsentChange:
    """The customer followed or unfollowed (blocked) the business's account."""

    channel: Channel
    sender: Identity
    opted_out: bool
    occurred_at: datetime


@dataclass(frozen=True)
class Skipped:
    """An event the hub has no use for (typing indicators, reactions, unknown types): logged only."""

    kind: str
    reason: str


WebhookItem = InboundMessage | StatusUpdate | ConsentChange | Skipped


@dataclass
class BatchOutcome:
    stored: list[str] = field(default_factory=list)  # hub message ids (new and duplicates)
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)
    # Messages whose sender should be told something at once (a refused link code).
    notices: list[tuple[InboundMessage, str, str]] = field(default_factory=list)  # message, customer, text


def process(items: list[WebhookItem]) -> BatchOutcome:
    from chalicelib.services.delivery_status import record_status
    from chalicelib.services.ingest import ingest

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
    from chalicelib.services.consent import set_consent
    from chalicelib.store import thread

    ref = thread.find_identity(change.sender)
    if ref is None:
        return  # never wrote: nothing to record until they do
    set_consent(ref.customer_id, change.channel, opted_out=change.opted_out, at=change.occurred_at)
    logger.info("consent changed", extra={"channel": change.channel.value, "opted_out": change.opted_out})


def tell(message: InboundMessage, text: str, customer_id: str | None = None) -> None:
    """Answer the sender at once on the channel they wrote from (best effort, not threaded). A
    reply token it uses is claimed first, so the next agent reply does not try a spent one."""
    from chalicelib.channels import registry
    from chalicelib.channels.base import Outgoing
    from chalicelib.domain.ids import new_id
    from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable

    if not registry.has_sender(message.provider):
        return
    sender = registry.sender(message.provider)
    if sender.missing_settings(message.channel.value):
        logger.warning("cannot answer the sender: channel not configured", extra={"channel": message.channel.value})
        return
    token = message.reply_token
    if token and customer_id:
        from chalicelib.store.customers import take_reply_token

        token = token if take_reply_token(customer_id, token) else None
    outgoing = Outgoing(
        channel=message.channel.value,
        recipient=message.sender.value,
        body=text,
        hub_message_id=new_id("msg"),
        reply_token=token,
    )
    try:
        sender.send(outgoing)
    except (ProviderRejected, ProviderUnavailable) as exc:
        logger.warning("notice to the sender not sent", extra={"error": str(exc)})
