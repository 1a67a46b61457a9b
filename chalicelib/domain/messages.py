"""Messages as the hub sees them, whatever channel carried them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain import clock
from chalicelib.domain.identity import Identity


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    WEBCHAT = "webchat"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    LINE = "line"
    WECHAT = "wechat"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    EVENT = "event"  # a note in the thread, such as the customer switching channels


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"


# How far along delivery a status is: a late callback never moves a message backwards.
# Failure states outrank success states that precede them in time (a message can be
# "sent" and then "undelivered"), but "read" is final proof of delivery.
STATUS_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.RECEIVED: 0,
    DeliveryStatus.SCHEDULED: 1,
    DeliveryStatus.ACCEPTED: 2,
    DeliveryStatus.QUEUED: 3,
    DeliveryStatus.SENDING: 4,
    DeliveryStatus.SENT: 5,
    DeliveryStatus.CANCELED: 6,
    DeliveryStatus.DELIVERED: 7,
    DeliveryStatus.UNDELIVERED: 8,
    DeliveryStatus.FAILED: 8,
    DeliveryStatus.READ: 9,
}


# A provider's final word that the message did not reach the customer (notifications fall back).
FAILURE_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED)


def utcnow() -> datetime:
    return clock.now()


class Media(BaseModel):
    """A picture, file or attachment. Email attachments keep metadata only, never their bytes."""

    url: str | None = None
    content_type: str | None = None
    filename: str | None = None
    size: int | None = None
    content_id: str | None = None


class EmailThreading(BaseModel):
    """Headers kept so an agent's reply threads in the customer's mail client."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)


class InboundMessage(BaseModel):
    """A message a customer sent, parsed from a provider's webhook."""

    model_config = ConfigDict(frozen=True)

    provider: str
    provider_message_id: str
    channel: Channel
    sender: Identity
    sender_address: str
    recipient_address: str
    body: str = ""
    subject: str | None = None
    media: list[Media] = Field(default_factory=list)
    profile_name: str | None = None
    email: EmailThreading | None = None
    provider_account: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    # LINE's reply token: free to answer with, single use, valid for about a minute.
    reply_token: str | None = None
    # A phone number the provider vouches belongs to the sender (a Telegram user sharing their own
    # contact): the sender's identity joins that phone's customer.
    verified_phone: str | None = None
    # A handoff link code the channel carried outside the text (Messenger m.me `?ref=`, a
    # Telegram `/start` payload): redeemed like a code typed in the message.
    link_code: str | None = None

    @property
    def dedupe_key(self) -> str:
        return f"{self.provider}:{self.provider_message_id}"


class StatusUpdate(BaseModel):
    """A provider's report on an outbound message's delivery."""

    model_config = ConfigDict(frozen=True)

    provider: str
    provider_message_id: str
    status: DeliveryStatus
    error_code: str | None = None
    error_message: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)


class Message(BaseModel):
    """One entry of a customer's thread, inbound or outbound."""

    id: str
    conversation_id: str
    customer_id: str
    channel: Channel
    direction: Direction
    body: str = ""
    subject: str | None = None
    status: DeliveryStatus
    created_at: datetime
    provider: str | None = None
    provider_message_id: str | None = None
    sender_address: str | None = None
    recipient_address: str | None = None
    media: list[Media] = Field(default_factory=list)
    email: EmailThreading | None = None
    error_code: str | None = None
    error_message: str | None = None
    status_updated_at: datetime | None = None
    agent_id: str | None = None  # who sent an outbound reply
    # Who wrote an outbound message: "agent" (an agent's reply), "bot" (the assistant or a bot
    # integration) or "system" (notifications, automatic replies, notices); analytics counts on it.
    sent_by: str | None = None
    # Answers the message offered as buttons ([{"id", "label"}]), e.g. a survey's ratings.
    choices: list[dict[str, str]] = Field(default_factory=list)
