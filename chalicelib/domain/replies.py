"""Agent replies, as pure decisions: which channel, to which address, with what content.

Nothing here does I/O. The one outbound path (domain/outbound.py plans, services/outbound.py
sends) asks these functions what may be sent, where and how. Every refusal is a `Refused` naming
the HTTP status and error code the API answers with.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.customers import Customer
from chalicelib.domain.identity import USER_ID_KINDS, IdentityKind
from chalicelib.domain.messages import Channel, DeliveryStatus, EmailThreading

SUPPORTED_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)
# Web chat is the hub's own channel: a reply is stored in the thread, where the visitor's page
# reads it; so it is offered only for customers who have a web chat identity (who opened the chat).
WEBCHAT_IDENTITY_KINDS = (IdentityKind.WEBCHAT, IdentityKind.EXTERNAL)
MAX_EMAIL_BODY_CHARS = 100_000  # the longest body a request may carry (each channel's own limit is in its RULES)
MAX_MEDIA = 10  # the most media a request may carry (Twilio's limit, the highest of any channel)
MAX_REFERENCES = 20  # enough for any client to thread; keeps the header short (RFC 5322 §3.6.4)
WHATSAPP_PREFIX = "whatsapp:"
HUMAN_AGENT_TAG = "HUMAN_AGENT"  # Meta's message tag for a human answering after the 24-hour window

# Chat apps that know the customer by their own user id, and who carries each.
CHAT_APP_CHANNELS = (Channel.MESSENGER, Channel.INSTAGRAM, Channel.TELEGRAM, Channel.LINE, Channel.WECHAT)
CHAT_APP_PROVIDERS = {
    Channel.MESSENGER: "meta",
    Channel.INSTAGRAM: "meta",
    Channel.TELEGRAM: "telegram",
    Channel.LINE: "line",
    Channel.WECHAT: "wechat",
}

_REPLY_PREFIX = re.compile(r"^\s*re\s*(\[\d+\])?\s*:", re.IGNORECASE)


class RefusalKind(StrEnum):
    """Why a request cannot be done as asked (chalicelib/http/ turns each into its HTTP status)."""

    INVALID = "invalid"  # malformed, or asks for something impossible
    NOT_FOUND = "not_found"  # names something that does not exist
    IN_PROGRESS = "in_progress"  # the same request is being handled right now
    UNPROCESSABLE = "unprocessable"  # well-formed, but the customer or channel cannot take it now
    PROVIDER_REFUSED = "provider_refused"  # a provider refused it for good (stored as failed)
    NOT_CONFIGURED = "not_configured"  # the hub lacks a setting it needs (retry once it is set)


class Refused(Exception):
    """The request cannot be done as asked: `kind` says why in general, `code` exactly (the API's
    error code), `details` adds data for programs (JSON)."""

    def __init__(self, kind: RefusalKind, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.details = details or {}
        self.replayed = False  # the answer to an earlier request with the same Idempotency-Key


class ProviderRejected(Exception):
    """The provider refused the message for good (a 4xx): it is stored as failed."""

    def __init__(self, provider: str, code: str, message: str, http_status: int) -> None:
        super().__init__(f"{provider} error {code}: {message}")
        self.provider = provider
        self.code = code
        self.message = message
        self.http_status = http_status


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered 5xx/429: nothing is stored, retry later."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider} unavailable: {reason}")
        self.provider = provider
        self.reason = reason


@dataclass(frozen=True)
class SentMessage:
    """What a provider answered when it accepted a message."""

    provider: str
    provider_message_id: str | None
    status: DeliveryStatus
    sender_address: str | None
    recipient_address: str


@dataclass(frozen=True)
class InboundEmail:
    """The customer's latest email in the conversation: what a reply threads under."""

    subject: str | None
    threading: EmailThreading | None


@dataclass(frozen=True)
class ReplyPlan:
    channel: Channel
    recipient: str  # E.164, whatsapp:+E.164, an email address, or a chat app's user id
    body: str
    media_urls: list[str] = field(default_factory=list)
    subject: str | None = None
    email: EmailThreading | None = None
    whatsapp_provider: str | None = None  # "meta" when the customer writes through the Cloud API
    message_tag: str | None = None  # Messenger/Instagram after the 24-hour window
    reply_token: str | None = None  # LINE: a fresh reply token (else the message is pushed)

    @property
    def provider(self) -> str:
        return provider_for(self.channel, self.whatsapp_provider)


def provider_for(channel: Channel, whatsapp_provider: str | None = None) -> str:
    """Who carries a message on `channel`: WhatsApp goes through Meta for customers who write
    through the Cloud API, else Twilio; email through SendGrid; web chat is the hub's own."""
    if channel is Channel.WEBCHAT:
        return "webchat"
    if channel in CHAT_APP_PROVIDERS:
        return CHAT_APP_PROVIDERS[channel]
    if channel is Channel.WHATSAPP and whatsapp_provider == "meta":
        return "meta"
    return "sendgrid" if channel is Channel.EMAIL else "twilio"


def webchat_identity(customer: Customer) -> str | None:
    """The customer's latest web chat visitor id (anonymous or signed in), if they have one."""
    found = [identity.value for identity in customer.identities if identity.kind in WEBCHAT_IDENTITY_KINDS]
    return found[-1] if found else None


def user_id_for(channel: Channel, customer: Customer) -> str | None:
    """The customer's latest user id on a chat app, if they have one."""
    kind = USER_ID_KINDS.get(channel.value)
    found = [identity.value for identity in customer.identities if identity.kind is kind]
    return found[-1] if found else None


def channels_for(customer: Customer) -> tuple[Channel, ...]:
    """The channels a reply to this customer can go on."""
    channels = list(SUPPORTED_CHANNELS)
    if webchat_identity(customer) is not None or Channel.WEBCHAT.value in customer.last_inbound_by_channel:
        channels.append(Channel.WEBCHAT)
    channels.extend(channel for channel in CHAT_APP_CHANNELS if user_id_for(channel, customer) is not None)
    return tuple(channels)


def choose_channel(requested: str | None, customer: Customer) -> Channel:
    """The channel asked for, else the one the customer last wrote from."""
    if requested is None:
        if customer.last_channel is None:
            raise Refused(
                RefusalKind.UNPROCESSABLE,
                "no_channel",
                "the customer has never written; name the 'channel' to reply on",
            )
        requested = customer.last_channel.value
    try:
        channel = Channel(requested.strip().lower())
    except ValueError:
        channel = None
    available = channels_for(customer)
    if channel not in available:
        names = ", ".join(c.value for c in available)
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "unsupported_channel",
            f"channel '{requested}' is not supported; use one of {names}",
        )
    assert channel is not None
    return channel


def recipient_for(channel: Channel, customer: Customer) -> str:
    """The customer's address on the channel; refused when the customer has none."""
    if channel is Channel.WEBCHAT:
        return webchat_identity(customer) or customer.id
    if channel in CHAT_APP_CHANNELS:
        user_id = user_id_for(channel, customer)
        if user_id is None:
            raise Refused(
                RefusalKind.UNPROCESSABLE,
                "no_address_for_channel",
                f"the customer has never written on {channel.value}; reply on another channel",
            )
        return user_id
    if channel is Channel.EMAIL:
        if not customer.email:
            raise Refused(
                RefusalKind.UNPROCESSABLE,
                "no_address_for_channel",
                "the customer has no email address; link one with PATCH /v1/customers/{id} or reply on another channel",
            )
        return customer.email
    if not customer.phone:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "no_address_for_channel",
            f"the customer has no phone number, so no {channel.value} reply can be sent; reply on another channel",
        )
    if channel is Channel.WHATSAPP and customer.whatsapp_provider != "meta":
        return whatsapp_address(customer.phone)  # Twilio's form; Meta's Cloud API takes the number
    return customer.phone


def whatsapp_address(number: str) -> str:
    """`whatsapp:+1555...` from a number written with or without the prefix."""
    bare = number.strip()
    if bare.lower().startswith(WHATSAPP_PREFIX):
        bare = bare[len(WHATSAPP_PREFIX) :]
    return WHATSAPP_PREFIX + bare.strip()


def reply_subject(given: str | None, their_subject: str | None) -> str:
    """The given subject, else "Re: <their subject>" (never "Re: Re:")."""
    chosen = _one_line(given) if given is not None else ""
    if chosen:
        return chosen
    theirs = _one_line(their_subject)
    if not theirs:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "subject_required",
            "the customer has not emailed in this conversation, so there is no subject to reply to; give 'subject'",
        )
    return theirs if _REPLY_PREFIX.match(theirs) else f"Re: {theirs}"


def reply_threading(theirs: EmailThreading | None) -> EmailThreading | None:
    """In-Reply-To and References that thread a reply under the customer's email."""
    if theirs is None or not theirs.message_id:
        return None
    references = [ref for ref in theirs.references if ref != theirs.message_id]
    references.append(theirs.message_id)
    unique = list(dict.fromkeys(references))
    if len(unique) > MAX_REFERENCES:
        # Keep the thread's first message and the most recent ones, as RFC 5322 suggests.
        unique = [unique[0], *unique[-(MAX_REFERENCES - 1) :]]
    return EmailThreading(in_reply_to=theirs.message_id, references=unique)


def email_text(body: str, media_urls: list[str]) -> str:
    """An email's text: the body, then any media as links (email attachments need the bytes)."""
    if not media_urls:
        return body
    links = "\n".join(media_urls)
    return f"{body.rstrip()}\n\n{links}" if body.strip() else links


def request_fingerprint(conversation_id: str, request: dict[str, Any]) -> str:
    """What an Idempotency-Key is bound to: the conversation and the (validated) request body."""
    canonical = json.dumps([conversation_id, request], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise Refused(
            RefusalKind.INVALID,
            "invalid_request",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters (no spaces)",
        )
    return key


def _one_line(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()
