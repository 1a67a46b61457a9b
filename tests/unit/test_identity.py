"""Given the many ways providers and people write one identity, when normalised, they are one key."""

from __future__ import annotations

import pytest

from chalicelib.domain.identity import (
    IdentityKind,
    InvalidIdentity,
    email_identity,
    normalize_phone,
    parse_email,
    phone_identity,
)


@pytest.mark.parametrize(
    "raw",
    [
        "+15017122661",
        "whatsapp:+15017122661",
        "WhatsApp:+15017122661",
        "tel:+1-501-712-2661",
        "sms:+15017122661",
        "(501) 712-2661",
        "501.712.2661",
        "001 501 712 2661",
        " +1 (501) 712 2661 ",
        "tel:+15017122661;ext=12",
    ],
)
def test_phone_forms_normalise_to_one_e164(raw: str) -> None:
    assert normalize_phone(raw, "US") == "+15017122661"


def test_national_format_uses_the_default_region() -> None:
    assert normalize_phone("020 7946 0018", "GB") == "+442079460018"
    assert normalize_phone("0532 123 45 67", "TR") == "+905321234567"


@pytest.mark.parametrize("raw", ["", "whatsapp:", "hello", "+1", "12", "tel:", "+999999999999999999"])
def test_unusable_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_phone(raw, "US")


def test_whatsapp_and_sms_share_the_phone_identity() -> None:
    assert phone_identity("whatsapp:+15017122661") == phone_identity("+15017122661")
    assert phone_identity("+15017122661").key == "phone#+15017122661"


@pytest.mark.parametrize(
    ("raw", "address", "name"),
    [
        ("Ada@Example.COM", "ada@example.com", ""),
        ('"Ada Lovelace" <Ada@Example.com>', "ada@example.com", "Ada Lovelace"),
        ("Ada Lovelace <ada@example.com>", "ada@example.com", "Ada Lovelace"),
        ("  <ada@example.com>  ", "ada@example.com", ""),
    ],
)
def test_email_forms_normalise_and_keep_the_display_name(raw: str, address: str, name: str) -> None:
    assert parse_email(raw) == (address, name)


@pytest.mark.parametrize("raw", ["", "not an email", "ada@", "@example.com", "ada@example"])
def test_unusable_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        email_identity(raw)


def test_email_identity_kind() -> None:
    identity = email_identity("Ada <ADA@example.com>")
    assert identity.kind is IdentityKind.EMAIL and identity.value == "ada@example.com"


def test_hostile_email_text_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidIdentity):
        parse_email("(" * 50_000 + "a@b.co")
    with pytest.raises(InvalidIdentity):
        parse_email("x" * 5000 + "@example.com")
