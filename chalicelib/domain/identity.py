"""Identities and their normalisation.

An identity is what a customer is recognised by: a phone number (shared by SMS, MMS, WhatsApp
and voice), an email address, or later a channel's own user id. Normalisation makes every
written form of one identity the same key, so `whatsapp:+15017122661`, `tel:+1-501-712-2661`
and `(501) 712-2661` (with default region US) are one person.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class InvalidIdentity(ValueError):
    """The text cannot be read as the identity it claims to be."""


class IdentityKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WEBCHAT = "webchat"  # an anonymous web chat visitor's id
    EXTERNAL = "external"  # the business's own customer id, from a verified web chat sign-in
    # A chat app's own user id. Messenger and Instagram ids are page-scoped (PSID / IGSID);
    # WhatsApp has none of its own: its user id is the phone number.
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    LINE = "line"
    WECHAT = "wechat"


class Identity(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: IdentityKind
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind.value}#{self.value}"


_PHONE_SCHEMES = ("whatsapp:", "tel:", "sms:", "mms:", "voice:")
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 form of a phone number in any of the forms providers and people write."""
    import phonenumbers

    text = (raw or "").strip()
    lowered = text.lower()
    for scheme in _PHONE_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :].strip()
            break
    text = text.split(";", 1)[0]  # tel: URIs may carry parameters (;ext=, ;phone-context=)
    if not text:
        raise InvalidIdentity("phone number is empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


MAX_ADDRESS_TEXT = 1000  # a real From header is far shorter; nested comments make parseaddr recurse


def parse_email(raw: str) -> tuple[str, str]:
    """(normalised address, display name) from `"Ada L." <Ada@Example.com>` and similar forms."""
    if len(raw or "") > MAX_ADDRESS_TEXT:
        raise InvalidIdentity("email address text is too long")
    try:
        name, address = parseaddr(raw or "")
    except RecursionError:
        raise InvalidIdentity("email address text is too deeply nested") from None
    address = address.strip().lower()
    if not _EMAIL_SHAPE.match(address):
        raise InvalidIdentity("not an email address")
    return address, name.strip().strip('"').strip()


def normalize_email(raw: str) -> str:
    return parse_email(raw)[0]


def phone_identity(raw: str, default_region: str = "US") -> Identity:
    return Identity(kind=IdentityKind.PHONE, value=normalize_phone(raw, default_region))


def email_identity(raw: str) -> Identity:
    return Identity(kind=IdentityKind.EMAIL, value=normalize_email(raw))


# The channels whose customers are known by the chat app's own user id, and the kind of that id.
USER_ID_KINDS: dict[str, IdentityKind] = {
    "messenger": IdentityKind.MESSENGER,
    "instagram": IdentityKind.INSTAGRAM,
    "telegram": IdentityKind.TELEGRAM,
    "line": IdentityKind.LINE,
    "wechat": IdentityKind.WECHAT,
}
MAX_USER_ID_CHARS = 128  # Telegram ids are 64-bit integers, LINE's 33 chars, WeChat OpenIDs 28
_USER_ID = re.compile(r"^[\x21-\x7e]+$")


def user_id_identity(channel: str, user_id: str) -> Identity:
    """The identity of a chat app's user id (`telegram`, `123456789`)."""
    kind = USER_ID_KINDS.get(channel)
    if kind is None:
        raise InvalidIdentity(f"'{channel}' does not identify customers by a user id")
    value = (user_id or "").strip()
    if not value:
        raise InvalidIdentity(f"the {channel} user id is empty")
    if len(value) > MAX_USER_ID_CHARS or not _USER_ID.match(value):
        raise InvalidIdentity(f"not a {channel} user id")
    return Identity(kind=kind, value=value)


def channel_identity(channel: str, address: str, default_region: str = "US") -> Identity:
    """The identity behind a channel address: a phone number for SMS and WhatsApp, an email
    address for email, the visitor id for web chat, the user id for the chat apps."""
    if channel in ("sms", "whatsapp", "phone"):
        return phone_identity(address, default_region)
    if channel == "email":
        return email_identity(address)
    if channel == "webchat":
        value = (address or "").strip()
        if not value or len(value) > MAX_USER_ID_CHARS:
            raise InvalidIdentity("not a web chat visitor id")
        return Identity(kind=IdentityKind.WEBCHAT, value=value)
    return user_id_identity(channel, address)
