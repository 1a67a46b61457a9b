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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from chalicelib.domain.customers import Customer
from chalicelib.domain.identity import USER_ID_KINDS, IdentityKind
from chalicelib.domain.messages import Channel, DeliveryStatus, EmailThreading

SUPPORTED_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)
PHONE_CHANNELS = (Channel.SMS, Channel.WHATSAPP)
# Web chat is the hub's own channel: a reply is stored in the thread, where the visitor's page
# reads it; so it is offered only for customers who have a web chat identity (who opened the chat).
WEBCHAT_IDENTITY_KINDS = (IdentityKind.WEBCHAT, IdentityKind.EXTERNAL)
MAX_TWILIO_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)
MAX_EMAIL_BODY_CHARS = 100_000
MAX_WEBCHAT_BODY_CHARS = 4000  # what a visitor may send, and what the chat page is made for
MAX_MEDIA = 10  # Twilio sends at most 10 media per message (error 21623)
WHATSAPP_WINDOW = timedelta(hours=24)
MAX_REFERENCES = 20  # enough for any client to thread; keeps the header short (RFC 5322 §3.6.4)
WHATSAPP_PREFIX = "whatsapp:"

# Chat apps that know the customer by their own user id, and what each allows in a reply.
CHAT_APP_CHANNELS = (Channel.MESSENGER, Channel.INSTAGRAM, Channel.TELEGRAM, Channel.LINE, Channel.WECHAT)
CHAT_APP_PROVIDERS = {
    Channel.MESSENGER: "meta",
    Channel.INSTAGRAM: "meta",
    Channel.TELEGRAM: "telegram",
    Channel.LINE: "line",
    Channel.WECHAT: "wechat",
}
BODY_LIMITS = {
    Channel.EMAIL: MAX_EMAIL_BODY_CHARS,
    Channel.WEBCHAT: MAX_WEBCHAT_BODY_CHARS,
    Channel.MESSENGER: 2000,  # Messenger Send API text limit
    Channel.INSTAGRAM: 1000,  # Instagram messaging text limit
    Channel.TELEGRAM: 4096,  # sendMessage text limit
    Channel.LINE: 5000,  # LINE text message limit
    Channel.WECHAT: 2000,  # customer service text messages are limited to 2048 bytes of UTF-8 text
}
WHATSAPP_CLOUD_MAX_BODY = 4096
# Media per reply: the chat apps take one attachment per message (the channel module sends the
# text as its caption or right after it); WeChat gets links, as it needs uploaded media ids.
MEDIA_LIMITS = {
    Channel.MESSENGER: 1,
    Channel.INSTAGRAM: 1,
    Channel.TELEGRAM: 1,
    Channel.LINE: 1,
}
# Meta's standard messaging window, and how long after it a human agent may still answer with
# the HUMAN_AGENT tag (Messenger and Instagram). WeChat allows customer service messages for 48 h.
MESSAGING_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"
WECHAT_WINDOW = timedelta(hours=48)
WECHAT_MAX_TEXT_BYTES = 2048
# LINE reply tokens are single use and must be used soon after the event; older ones are not tried.
LINE_REPLY_TOKEN_TTL = timedelta(seconds=50)

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


def check_whatsapp_window(customer: Customer, now: datetime) -> None:
    """WhatsApp allows free-form replies only within 24 hours of the customer's last message."""
    last = customer.last_inbound_by_channel.get(Channel.WHATSAPP.value)
    if last is None:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "whatsapp_window_closed",
            "the customer has never written on WhatsApp, so a free-form message cannot be sent; "
            "a pre-approved WhatsApp template is needed",
        )
    if now - last > WHATSAPP_WINDOW:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "whatsapp_window_closed",
            f"the customer last wrote on WhatsApp at {last.isoformat()}, more than 24 hours ago; "
            "outside the customer-service window only a pre-approved WhatsApp template can be sent",
        )


def check_content(
    channel: Channel, body: str, media_urls: list[str], subject: str | None, provider: str | None = None
) -> None:
    if not body.strip() and not media_urls:
        raise Refused(RefusalKind.INVALID, "invalid_request", "give a non-empty 'body' or at least one of 'media_urls'")
    limit = BODY_LIMITS.get(channel, MAX_TWILIO_BODY_CHARS)
    if channel is Channel.WHATSAPP and provider == "meta":
        limit = WHATSAPP_CLOUD_MAX_BODY
    if len(body) > limit:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "body_too_long",
            f"a {channel.value} body holds at most {limit} characters; this one has {len(body)}",
        )
    if channel is Channel.WECHAT and len(email_text(body, media_urls).encode("utf-8")) > WECHAT_MAX_TEXT_BYTES:
        # WeChat counts UTF-8 bytes (error 45002), and media go out as links in the text
        limit_text = f"a wechat message holds at most {WECHAT_MAX_TEXT_BYTES} bytes of text, links included"
        raise Refused(RefusalKind.UNPROCESSABLE, "body_too_long", limit_text)
    media_limit = MEDIA_LIMITS.get(channel, 1 if provider == "meta" else MAX_MEDIA)
    if len(media_urls) > media_limit:
        raise Refused(
            RefusalKind.UNPROCESSABLE, "too_many_media", f"at most {media_limit} media per {channel.value} message"
        )
    if subject is not None and channel is not Channel.EMAIL:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "subject_not_supported",
            f"a subject is only sent by email, and this reply goes by {channel.value}",
        )


def messaging_tag(channel: Channel, customer: Customer, now: datetime) -> str | None:
    """Messenger and Instagram: no tag inside the 24-hour window, HUMAN_AGENT up to 7 days after
    the customer's last message, refused after that."""
    last = customer.last_inbound_by_channel.get(channel.value)
    if last is not None and now - last <= MESSAGING_WINDOW:
        return None
    if last is not None and now - last <= HUMAN_AGENT_WINDOW:
        return HUMAN_AGENT_TAG
    when = f"last wrote at {last.isoformat()}" if last else "has never written"
    raise Refused(
        RefusalKind.UNPROCESSABLE,
        "messaging_window_closed",
        f"the customer {when} on {channel.value}; a human agent may answer only within 7 days of "
        "the customer's last message",
    )


def check_wechat_window(customer: Customer, now: datetime) -> None:
    last = customer.last_inbound_by_channel.get(Channel.WECHAT.value)
    if last is None or now - last > WECHAT_WINDOW:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "messaging_window_closed",
            "WeChat allows customer service messages only within 48 hours of the customer's last message",
        )


def fresh_reply_token(channel: Channel, customer: Customer, now: datetime) -> str | None:
    """A reply token for this channel young enough to be worth trying (it is used at most once)."""
    token = customer.reply_token
    if token is None or token.channel is not channel or now - token.received_at > LINE_REPLY_TOKEN_TTL:
        return None
    return token.token


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
