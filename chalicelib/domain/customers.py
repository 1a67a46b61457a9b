"""Customers and their one conversation thread."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.identity import Identity, InvalidIdentity, email_identity
from chalicelib.domain.ids import id_datetime
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, InboundMessage, Message
from chalicelib.domain.sla_clocks import SlaState
from chalicelib.domain.surveys import Survey


class ConversationStatus(StrEnum):
    OPEN = "open"  # has messages, not yet handed to routing
    WAITING = "waiting"  # waiting for an agent
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


ASSISTANT = "assistant"  # the built-in assistant's integration id


class ControllerKind(StrEnum):
    BOT = "bot"
    HUMANS = "humans"
    NOBODY = "nobody"


class Controller(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ControllerKind
    integration_id: str | None = None  # the bot's (ASSISTANT for the built-in one)

    @classmethod
    def named(cls, name: str) -> Controller:
        """ "humans", "nobody", "assistant" or an integration id."""
        if name == ControllerKind.HUMANS.value:
            return cls(kind=ControllerKind.HUMANS)
        if name == ControllerKind.NOBODY.value:
            return cls(kind=ControllerKind.NOBODY)
        return cls(kind=ControllerKind.BOT, integration_id=name)

    @property
    def name(self) -> str:
        return self.integration_id if self.is_bot and self.integration_id else self.kind.value

    @property
    def is_bot(self) -> bool:
        return self.kind is ControllerKind.BOT


class Control(BaseModel):
    """The control state stored on the conversation."""

    controller: Controller
    offered_to: Controller | None = None
    since: datetime
    reason: str | None = None
    # What the last controller handed over: its summary and the fields it collected, for the agent.
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 0


class ReplyToken(BaseModel):
    channel: Channel
    token: str
    received_at: datetime


class Customer(BaseModel):
    id: str
    conversation_id: str
    # What the business set through the API; never overwritten by what providers send.
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    # What providers told us (WhatsApp ProfileName, an email's display name), per channel.
    provider_names: dict[str, str] = Field(default_factory=dict)
    identities: list[Identity] = Field(default_factory=list)
    last_channel: Channel | None = None
    last_inbound_at: datetime | None = None
    # When the customer last wrote on each channel (WhatsApp's 24-hour window is counted from it).
    last_inbound_by_channel: dict[str, datetime] = Field(default_factory=dict)
    # Consent and preferences: channels the customer opted out of (STOP, unsubscribe) and when;
    # the channel they prefer; quiet hours in their own time zone ("22:00"-"08:00").
    opted_out: dict[str, datetime] = Field(default_factory=dict)
    preferred_channel: Channel | None = None
    timezone: str | None = None
    quiet_hours: dict[str, str] | None = None
    # Which provider carried the customer's latest WhatsApp message (Twilio or Meta's Cloud API):
    # replies go back through it, since the business's number lives with that provider.
    whatsapp_provider: str | None = None
    # The business address the customer last wrote to on each channel (the inbound `To`): the
    # hub answers from it, so a customer who texted number X hears back from X.
    business_addresses: dict[str, str] = Field(default_factory=dict)
    # The latest unused reply token a channel gave us (LINE): replying with it is free.
    reply_token: ReplyToken | None = None
    # Who last resolved this customer's conversation, for sticky routing.
    last_agent_id: str | None = None
    last_resolved_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    # Bumped on every profile change; writes are conditional on it (optimistic locking).
    version: int = 0

    @property
    def display_name(self) -> str | None:
        if self.name:
            return self.name
        if self.last_channel and self.last_channel.value in self.provider_names:
            return self.provider_names[self.last_channel.value]
        return next(iter(self.provider_names.values()), None)


class Conversation(BaseModel):
    id: str
    customer_id: str
    status: ConversationStatus = ConversationStatus.OPEN
    channels: list[Channel] = Field(default_factory=list)
    message_count: int = 0
    inbound_count: int = 0
    outbound_count: int = 0
    last_message_id: str | None = None
    last_message_at: datetime | None = None
    last_channel: Channel | None = None
    waiting_since: datetime | None = None
    # Routing state: the waiting task (queue + sort key), the pending offer, the agent holding it.
    task_queue: str | None = None
    task_sort_key: str | None = None
    task_shard: int = 0
    offer_id: str | None = None
    assigned_agent_id: str | None = None
    assigned_channel: str | None = None
    assigned_at: datetime | None = None
    resolved_at: datetime | None = None
    # Who controls the conversation (domain/control.py); None until its first message is handled.
    control: Control | None = None
    # The service-level clocks of the current cycle (domain/sla.py), when a policy applies.
    sla: SlaState | None = None
    # The satisfaction survey of the last resolved cycle, while it can be answered (domain/surveys.py).
    survey: Survey | None = None
    created_at: datetime
    updated_at: datetime


# Channels whose business side has addresses of its own (numbers, mailboxes) a reply can come from.
ADDRESSED_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)


def answers_from(msg: InboundMessage) -> bool:
    """True when the inbound message names the business address a reply should come from (an
    email's recipient only when it is a valid address: a garbled To header is never a sender)."""
    if msg.channel not in ADDRESSED_CHANNELS or not msg.recipient_address.strip():
        return False
    if msg.channel is Channel.EMAIL:
        try:
            return email_identity(msg.recipient_address).value == msg.recipient_address
        except InvalidIdentity:
            return False
    return True


def customer_from_first_message(customer_id: str, conversation_id: str, msg: InboundMessage) -> Customer:
    """The customer a first message from an unknown identity creates."""
    phone = msg.sender.value if msg.sender.kind == "phone" else None
    email = msg.sender.value if msg.sender.kind == "email" else None
    names = {msg.channel.value: msg.profile_name} if msg.profile_name else {}
    token = None
    if msg.reply_token:
        token = ReplyToken(channel=msg.channel, token=msg.reply_token, received_at=msg.received_at)
    return Customer(
        whatsapp_provider=msg.provider if msg.channel is Channel.WHATSAPP else None,
        reply_token=token,
        id=customer_id,
        conversation_id=conversation_id,
        phone=phone,
        email=email,
        provider_names=names,
        identities=[msg.sender],
        last_channel=msg.channel,
        last_inbound_at=msg.received_at,
        last_inbound_by_channel={msg.channel.value: msg.received_at},
        business_addresses={msg.channel.value: msg.recipient_address} if answers_from(msg) else {},
        created_at=msg.received_at,
        updated_at=msg.received_at,
    )


# A DynamoDB item holds at most 400 KB: longer bodies are cut, and the message says so.
MAX_BODY_CHARS = 100_000
MAX_SUBJECT_CHARS = 1_000


def inbound_thread_message(message_id: str, customer_id: str, conversation_id: str, msg: InboundMessage) -> Message:
    """The thread entry for an inbound message. Its time is its id's, so id order is time order."""
    body = msg.body if len(msg.body) <= MAX_BODY_CHARS else msg.body[:MAX_BODY_CHARS] + "\n[truncated]"
    return Message(
        id=message_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        channel=msg.channel,
        direction=Direction.INBOUND,
        body=body,
        subject=msg.subject[:MAX_SUBJECT_CHARS] if msg.subject else msg.subject,
        status=DeliveryStatus.RECEIVED,
        created_at=id_datetime(message_id),
        provider=msg.provider,
        provider_message_id=msg.provider_message_id,
        sender_address=msg.sender_address,
        recipient_address=msg.recipient_address,
        media=msg.media,
        email=msg.email,
    )


def thread_note(message_id: str, conversation_id: str, customer_id: str, channel: Channel, text: str) -> Message:
    """A note in the thread (direction `event`), such as the customer continuing on another channel."""
    return Message(
        id=message_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        channel=channel,
        direction=Direction.EVENT,
        body=text,
        status=DeliveryStatus.RECEIVED,
        created_at=id_datetime(message_id),
    )
