"""Consent as pure decisions: keywords, quiet hours, channel eligibility, unsubscribe tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.channels import unsubscribe
from chalicelib.domain.consent import (
    KeywordAction,
    QuietHours,
    channel_block,
    check_timezone,
    default_channels,
    match_keyword,
    opted_out_reason,
    opted_out_view,
    parse_clock,
    quiet_hours_end,
)
from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "unit-test-unsubscribe-secret"


def customer(**fields: Any) -> Customer:
    base: dict[str, Any] = {
        "id": "cus_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "conversation_id": "conv_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "phone": "+15017122661",
        "email": "ada@example.com",
        "created_at": NOW - timedelta(days=30),
        "updated_at": NOW - timedelta(days=30),
    }
    return Customer(**{**base, **fields})


# --- Keywords -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("STOP", KeywordAction.OPT_OUT),
        ("stop", KeywordAction.OPT_OUT),
        ("  Stop.  ", KeywordAction.OPT_OUT),
        ("STOP!!!", KeywordAction.OPT_OUT),
        ("StopAll", KeywordAction.OPT_OUT),
        ("unsubscribe", KeywordAction.OPT_OUT),
        ("Cancel?", KeywordAction.OPT_OUT),
        ("end", KeywordAction.OPT_OUT),
        ("QUIT", KeywordAction.OPT_OUT),
        ("start", KeywordAction.OPT_IN),
        ("Unstop!", KeywordAction.OPT_IN),
        ("help", KeywordAction.HELP),
        ("Help?", KeywordAction.HELP),
        ("INFO", KeywordAction.HELP),
    ],
)
def test_whole_message_keywords_match_case_and_trailing_punctuation_aside(text: str, action: KeywordAction) -> None:
    match = match_keyword(text)
    assert match is not None and match.action is action


@pytest.mark.parametrize(
    "text",
    ["please stop", "stop it", "STOP ALL", "¿stop", "stopp", "", "   ", "I need help with my order", "x" * 5000],
)
def test_anything_but_a_whole_keyword_is_an_ordinary_message(text: str) -> None:
    assert match_keyword(text) is None


def test_yes_opts_in_only_a_customer_who_is_opted_out() -> None:
    # "Yes" is a normal answer to an agent's question...
    assert match_keyword("Yes") is None
    # ...and Twilio's opt-in keyword for someone who sent STOP.
    match = match_keyword("Yes.", opted_out=True)
    assert match is not None and (match.keyword, match.action) == ("YES", KeywordAction.OPT_IN)


# --- Quiet hours --------------------------------------------------------------------------------------

NIGHT = {"start": "22:00", "end": "08:00"}


@pytest.mark.parametrize(
    ("utc_now", "expected_end"),
    [
        # Istanbul is UTC+3 all year: 23:30 local is in the night; it ends at 08:00 local = 05:00 UTC
        (datetime(2025, 1, 15, 20, 30, tzinfo=UTC), datetime(2025, 1, 16, 5, 0, tzinfo=UTC)),
        # 02:00 local, after midnight: ends the same local morning
        (datetime(2025, 1, 15, 23, 0, tzinfo=UTC), datetime(2025, 1, 16, 5, 0, tzinfo=UTC)),
        # 22:00 local exactly is quiet; 08:00 local exactly is not
        (datetime(2025, 1, 15, 19, 0, tzinfo=UTC), datetime(2025, 1, 16, 5, 0, tzinfo=UTC)),
        (datetime(2025, 1, 16, 5, 0, tzinfo=UTC), None),
        # the middle of the day
        (datetime(2025, 1, 15, 12, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_across_midnight_in_the_customers_zone(utc_now: datetime, expected_end: datetime | None) -> None:
    assert quiet_hours_end(NIGHT, "Europe/Istanbul", utc_now) == expected_end


def test_quiet_hours_within_one_day_and_the_default_zone() -> None:
    lunch = {"start": "12:00", "end": "13:30"}
    assert quiet_hours_end(lunch, None, datetime(2025, 1, 15, 12, 15, tzinfo=UTC)) == datetime(
        2025, 1, 15, 13, 30, tzinfo=UTC
    )
    assert quiet_hours_end(lunch, None, datetime(2025, 1, 15, 13, 30, tzinfo=UTC)) is None
    # a customer without a zone gets the configured default
    # (Dubai is UTC+4: 08:15 UTC is 12:15 there, and lunch ends at 13:30 there, 09:30 UTC)
    dubai = quiet_hours_end(lunch, None, datetime(2025, 1, 15, 8, 15, tzinfo=UTC), "Asia/Dubai")
    assert dubai == datetime(2025, 1, 15, 9, 30, tzinfo=UTC)


def test_quiet_hours_follow_daylight_saving_time() -> None:
    # New York: the night of 8-9 March 2025 loses an hour; 08:00 EDT is 12:00 UTC (not 13:00)
    end = quiet_hours_end(NIGHT, "America/New_York", datetime(2025, 3, 9, 4, 0, tzinfo=UTC))
    assert end == datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


def test_no_or_broken_quiet_hours_never_hold_anything() -> None:
    assert quiet_hours_end(None, "UTC", NOW) is None
    assert quiet_hours_end({"start": "25:00", "end": "08:00"}, "UTC", NOW) is None
    assert quiet_hours_end({"start": "10:00"}, "UTC", NOW) is None
    assert quiet_hours_end(NIGHT, "Not/AZone", NOW) is None


def test_quiet_hours_and_time_zones_are_validated() -> None:
    assert QuietHours(start="22:00", end="08:00").model_dump() == NIGHT
    for bad in ({"start": "22:00", "end": "22:00"}, {"start": "7:00", "end": "08:00"}, {"start": "22:00"}):
        with pytest.raises(ValidationError):
            QuietHours.model_validate(bad)
    with pytest.raises(ValidationError):
        QuietHours.model_validate({"start": "22:00", "end": "08:00", "days": "weekdays"})
    assert parse_clock("23:59").hour == 23
    with pytest.raises(ValueError):
        parse_clock("24:00")
    assert check_timezone("Europe/Istanbul") == "Europe/Istanbul"
    assert check_timezone(" UTC ") == "UTC"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "Europe/" + "x" * 80, "/etc/localtime"):
        with pytest.raises(ValueError):
            check_timezone(bad)


# --- Channels ----------------------------------------------------------------------------------------


def test_a_channel_is_blocked_by_an_opt_out_or_a_missing_address() -> None:
    opted = customer(opted_out={"sms": NOW - timedelta(days=1)})
    block = channel_block(opted, Channel.SMS)
    assert block is not None and block.code == "opted_out" and "2025-01-14T12:00:00Z" in block.reason
    assert channel_block(opted, Channel.WHATSAPP) is None  # consent is per channel
    assert channel_block(customer(email=None), Channel.EMAIL).code == "no_address"  # type: ignore[union-attr]
    assert channel_block(customer(phone=None), Channel.WHATSAPP).code == "no_address"  # type: ignore[union-attr]
    assert channel_block(customer(), Channel.WEBCHAT).code == "unsupported_channel"  # type: ignore[union-attr]
    unsubscribed = customer(opted_out={"email": NOW})
    assert "unsubscribed from email" in str(opted_out_reason(unsubscribed, Channel.EMAIL))
    assert opted_out_view(unsubscribed) == {"email": "2025-01-15T12:00:00Z"}


def test_the_whatsapp_window_is_24_hours_from_the_last_whatsapp_message() -> None:
    from chalicelib.channels import twilio
    from chalicelib.domain.channel_rules import window_open

    rules = twilio.RULES["whatsapp"]
    assert not window_open(rules, customer(), Channel.WHATSAPP, NOW)
    wrote = customer(last_inbound_by_channel={"whatsapp": NOW - timedelta(hours=23, minutes=59)})
    assert window_open(rules, wrote, Channel.WHATSAPP, NOW)
    assert not window_open(rules, wrote, Channel.WHATSAPP, NOW + timedelta(minutes=2))
    # an SMS does not open the WhatsApp window
    assert not window_open(rules, customer(last_inbound_by_channel={"sms": NOW}), Channel.WHATSAPP, NOW)


def test_default_channel_order_is_preferred_then_last_then_sms_whatsapp_email() -> None:
    assert default_channels(customer()) == [Channel.SMS, Channel.WHATSAPP, Channel.EMAIL]
    assert default_channels(customer(last_channel=Channel.EMAIL)) == [Channel.EMAIL, Channel.SMS, Channel.WHATSAPP]
    both = customer(preferred_channel=Channel.WHATSAPP, last_channel=Channel.EMAIL)
    assert default_channels(both) == [Channel.WHATSAPP, Channel.EMAIL, Channel.SMS]
    assert default_channels(customer(last_channel=Channel.WEBCHAT)) == [Channel.SMS, Channel.WHATSAPP, Channel.EMAIL]


# --- Unsubscribe tokens and headers ---------------------------------------------------------------------


def test_an_unsubscribe_token_round_trips_and_names_customer_and_channel() -> None:
    token = unsubscribe.make_token("cus_01JABCDEFGHJKMNPQRSTVWXYZ0", "email", SECRET)
    named = unsubscribe.read_token(token, SECRET)
    assert (named.customer_id, named.channel) == ("cus_01JABCDEFGHJKMNPQRSTVWXYZ0", "email")
    assert token == unsubscribe.make_token("cus_01JABCDEFGHJKMNPQRSTVWXYZ0", "email", SECRET)  # stable, no expiry
    assert token.startswith("u1.") and len(token) < 120


def test_a_forged_altered_or_foreign_token_is_refused() -> None:
    token = unsubscribe.make_token("cus_01JABCDEFGHJKMNPQRSTVWXYZ0", "email", SECRET)
    version, payload, signature = token.split(".")
    other_payload = unsubscribe.make_token("cus_01JOTHERCUSTOMERXXXXXXXXX0", "email", SECRET).split(".")[1]
    forged = [
        f"{version}.{other_payload}.{signature}",  # another customer under this signature
        f"{version}.{payload}.{signature[:-2]}AA",
        f"u2.{payload}.{signature}",
        token + ".x",
        "",
        "not a token",
        "u1." + "A" * 500,
    ]
    for bad in forged:
        with pytest.raises(unsubscribe.InvalidToken):
            unsubscribe.read_token(bad, SECRET)
    with pytest.raises(unsubscribe.InvalidToken):
        unsubscribe.read_token(token, "another-secret")
    with pytest.raises(unsubscribe.InvalidToken):
        unsubscribe.read_token(token, "")
    with pytest.raises(ValueError):
        unsubscribe.make_token("cus_x", "email", "")


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    token = unsubscribe.make_token("cus_01JABCDEFGHJKMNPQRSTVWXYZ0", "email", SECRET)
    url = unsubscribe.unsubscribe_url("https://hub.example.com/", token)
    headers = unsubscribe.list_unsubscribe_headers(url, unsubscribe.mailto_uri("support@example.com", token))
    assert url == f"https://hub.example.com/unsubscribe/email/{token}"
    assert headers == {
        "List-Unsubscribe": f"<{url}>, <mailto:support@example.com?subject=unsubscribe%20{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert unsubscribe.list_unsubscribe_headers(url) == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert unsubscribe.subject_token(f"unsubscribe {token}") == token
    assert unsubscribe.subject_token("Unsubscribe me please") is None
    assert unsubscribe.subject_token(None) is None


def test_confirmation_channels_setting() -> None:
    from chalicelib.services.consent import parse_confirm_channels

    assert parse_confirm_channels("") == {Channel.SMS, Channel.WHATSAPP}
    assert parse_confirm_channels("TRUE") == {Channel.SMS, Channel.WHATSAPP}
    assert parse_confirm_channels("false") == set()
    assert parse_confirm_channels("whatsapp") == {Channel.WHATSAPP}
    assert parse_confirm_channels("sms, email") == {Channel.SMS}
