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
