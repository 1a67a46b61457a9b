"""Handoff links: an invitation to continue the same conversation on another channel.

A link has a short human code (`LINK-7KQ4MZ`) that a customer can type or that a WhatsApp
click-to-chat link pre-fills, and, for web chat, a signed token carried in a URL. Either way it is
single use and expires; redeeming it binds the new channel's identity to the same customer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from pydantic import BaseModel

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L: codes are read and typed by people
CODE_LENGTH = 6
CODE_PATTERN = re.compile(r"\bLINK-([" + CODE_ALPHABET + r"]{" + str(CODE_LENGTH) + r"})\b", re.IGNORECASE)


class LinkTarget(StrEnum):
    WEBCHAT = "webchat"
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"
    TELEGRAM = "telegram"
    MESSENGER = "messenger"
    LINE = "line"


@dataclass(frozen=True)
class InvitationAddresses:
    """Where the business can be reached on each channel, for invitation texts (None = not set up)."""

    webchat_url: str | None = None
    whatsapp_number: str | None = None
    sms_number: str | None = None
    email_address: str | None = None
    telegram_bot: str | None = None  # the bot's username, for t.me/<bot>?start=<code>
    messenger_page: str | None = None  # the Page's username or id, for m.me/<page>?ref=<code>
    line_basic_id: str | None = None  # the official account's basic id (@...), for a pre-filled chat


class LinkRefused(ValueError):
    """The code or token cannot be used; the message is safe to show the customer."""


class Link(BaseModel):
    code: str
    customer_id: str
    conversation_id: str
    target: LinkTarget
    created_by: str
    created_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None = None
    redeemed_identity: str | None = None


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def find_code(text: str) -> str | None:
    """The link code a message carries, upper-cased, if any."""
    match = CODE_PATTERN.search(text or "")
    return match.group(1).upper() if match else None


def new_link(
    code: str,
    customer_id: str,
    conversation_id: str,
    target: LinkTarget,
    created_by: str,
    now: datetime,
    ttl: timedelta,
) -> Link:
    return Link(
        code=code,
        customer_id=customer_id,
        conversation_id=conversation_id,
        target=target,
        created_by=created_by,
        created_at=now,
        expires_at=now + ttl,
    )


def check_redeemable(link: Link | None, now: datetime) -> Link:
    if link is None:
        raise LinkRefused("That code is not valid. Please ask us for a new link.")
    if link.redeemed_at is not None:
        raise LinkRefused("That code was already used. Please ask us for a new link.")
    if now >= link.expires_at:
        raise LinkRefused("That code has expired. Please ask us for a new link.")
    return link


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(code: str, expires_at: datetime, secret: str) -> str:
    """A web chat link token: the code and its expiry, signed so it cannot be forged or altered."""
    payload = _b64(json.dumps({"code": code, "exp": int(expires_at.timestamp())}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(secret.encode(), f"v1.{payload}".encode(), hashlib.sha256).digest())
    return f"v1.{payload}.{signature}"


def read_token(token: str, secret: str, now: datetime) -> str:
    """The code a valid token carries; LinkRefused for a forged, altered or expired one."""
    parts = (token or "").split(".")
    if len(parts) != 3 or parts[0] != "v1" or not secret:
        raise LinkRefused("That link is not valid. Please ask us for a new one.")
    expected = _b64(hmac.new(secret.encode(), f"v1.{parts[1]}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        raise LinkRefused("That link is not valid. Please ask us for a new one.")
    try:
        claims = json.loads(_unb64(parts[1]))
        code, expires = str(claims["code"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise LinkRefused("That link is not valid. Please ask us for a new one.") from None
    if now.timestamp() >= expires:
        raise LinkRefused("That link has expired. Please ask us for a new one.")
    return code


def invitation_text(link: Link, addresses: InvitationAddresses, business: str) -> str:
    """What the customer receives on their current channel. The chat apps' links carry the code
    to the hub by themselves (Telegram's /start payload, Messenger's ref, a pre-filled message)."""
    code = f"LINK-{link.code}"
    target = link.target
    if target is LinkTarget.WEBCHAT and addresses.webchat_url:
        return f"Continue your conversation with {business} securely here: {addresses.webchat_url}"
    if target is LinkTarget.WHATSAPP and addresses.whatsapp_number:
        digits = re.sub(r"\D", "", addresses.whatsapp_number)
        prefill = quote(f"Hi {business}! My code is {code}")
        return f"Continue with {business} on WhatsApp: https://wa.me/{digits}?text={prefill}"
    if target is LinkTarget.SMS and addresses.sms_number:
        return f"To continue by text message, send {code} to {addresses.sms_number}."
    if target is LinkTarget.EMAIL and addresses.email_address:
        return f"To continue by email, write to {addresses.email_address} with {code} in the subject."
    if target is LinkTarget.TELEGRAM and addresses.telegram_bot:
        bot = addresses.telegram_bot.lstrip("@")
        return f"Continue with {business} on Telegram: https://t.me/{quote(bot)}?start={code}"
    if target is LinkTarget.MESSENGER and addresses.messenger_page:
        return f"Continue with {business} on Messenger: https://m.me/{quote(addresses.messenger_page)}?ref={code}"
    if target is LinkTarget.LINE and addresses.line_basic_id:
        basic_id = quote("@" + addresses.line_basic_id.lstrip("@"))
        prefill = quote(f"Hi {business}! My code is {code}")
        return f"Continue with {business} on LINE: https://line.me/R/oaMessage/{basic_id}/?{prefill}"
    raise ValueError(f"the hub has no {link.target.value} address configured to invite the customer to")
