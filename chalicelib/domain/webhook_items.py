"""What a provider's webhook delivered, item by item, and what filing them came to.

A channel module's `parse` turns a request into a list of these items (several per request for
Meta, LINE and WeChat; one for Telegram, Twilio and SendGrid); `services/webhook_intake.py` files
each one, and the channel's `acknowledgement` answers the provider from the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.domain.identity import Identity
from chalicelib.domain.messages import Channel, InboundMessage, StatusUpdate


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
    # Messages whose sender must be told something at once (a refused link code):
    # (message, customer id, text).
    notices: list[tuple[InboundMessage, str, str]] = field(default_factory=list)
