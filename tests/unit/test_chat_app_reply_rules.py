"""The channel rules for chat apps, decided before anything is sent: which channels a customer can
be answered on, their address there, Messenger's window and HUMAN_AGENT tag, WeChat's 48 hours,
LINE's reply token, and WhatsApp through Meta's Cloud API versus Twilio."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.customers import Customer, ReplyToken
from chalicelib.domain.identity import InvalidIdentity, channel_identity, user_id_identity
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import HUMAN_AGENT_TAG, RefusalKind, Refused, channels_for, choose_channel
from tests.support.reply_plans import plan_reply

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def customer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": "cus_1",
        "conversation_id": "conv_1",
        "phone": "+15017122661",
        "identities": [
            {"kind": "phone", "value": "+15017122661"},
            {"kind": "telegram", "value": "111"},
            {"kind": "messenger", "value": "PSID-1"},
            {"kind": "wechat", "value": "oOPENID"},
            {"kind": "line", "value": "U" + "a" * 32},
        ],
        "last_channel": Channel.TELEGRAM,
        "last_inbound_by_channel": {
            "telegram": NOW - timedelta(days=40),
            "messenger": NOW - timedelta(hours=2),
            "wechat": NOW - timedelta(hours=2),
            "line": NOW - timedelta(seconds=5),
            "whatsapp": NOW - timedelta(hours=1),
        },
        "created_at": NOW - timedelta(days=50),
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Customer(**fields)


def plan(channel: Channel, who: Customer, body: str = "hello", media: list[str] | None = None) -> Any:
    return plan_reply(channel=channel, customer=who, body=body, media_urls=media or [], subject=None, now=NOW)


def refused(channel: Channel, who: Customer, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as raised:
        plan(channel, who, **kwargs)
    return raised.value


def test_chat_apps_are_offered_only_where_the_customer_has_a_user_id() -> None:
    offered = channels_for(customer())
    assert {Channel.TELEGRAM, Channel.MESSENGER, Channel.WECHAT, Channel.LINE} <= set(offered)
    assert Channel.INSTAGRAM not in offered
    assert refused(Channel.INSTAGRAM, customer()).code == "no_address_for_channel"
    assert choose_channel("Telegram", customer()) is Channel.TELEGRAM
    with pytest.raises(Refused):
        choose_channel("instagram", customer())


def test_the_reply_goes_to_the_latest_user_id_on_that_channel() -> None:
    who = customer(identities=[{"kind": "telegram", "value": "111"}, {"kind": "telegram", "value": "222"}])
    reply = plan(Channel.TELEGRAM, who)
    assert (reply.recipient, reply.provider) == ("222", "telegram")


def test_telegram_has_no_window() -> None:
    assert plan(Channel.TELEGRAM, customer()).message_tag is None  # last wrote 40 days ago


def test_messenger_inside_24_hours_needs_no_tag_then_human_agent_for_7_days_then_refused() -> None:
    assert plan(Channel.MESSENGER, customer()).message_tag is None
    late = customer(last_inbound_by_channel={"messenger": NOW - timedelta(hours=30)})
    assert plan(Channel.MESSENGER, late).message_tag == HUMAN_AGENT_TAG
    gone = customer(last_inbound_by_channel={"messenger": NOW - timedelta(days=8)})
    refusal = refused(Channel.MESSENGER, gone)
    assert (refusal.kind, refusal.code) == (RefusalKind.UNPROCESSABLE, "messaging_window_closed")


def test_wechat_allows_customer_service_messages_for_48_hours() -> None:
    assert plan(Channel.WECHAT, customer()).provider == "wechat"
    late = customer(last_inbound_by_channel={"wechat": NOW - timedelta(hours=49)})
    assert refused(Channel.WECHAT, late).code == "messaging_window_closed"


def test_a_fresh_line_reply_token_is_used_and_a_stale_or_foreign_one_is_not() -> None:
    fresh = ReplyToken(channel=Channel.LINE, token="tok-1", received_at=NOW - timedelta(seconds=5))
    assert plan(Channel.LINE, customer(reply_token=fresh)).reply_token == "tok-1"
    stale = fresh.model_copy(update={"received_at": NOW - timedelta(minutes=5)})
    assert plan(Channel.LINE, customer(reply_token=stale)).reply_token is None
    assert plan(Channel.TELEGRAM, customer(reply_token=fresh)).reply_token is None


def test_whatsapp_goes_back_through_the_provider_the_customer_wrote_through() -> None:
    through_meta = plan(Channel.WHATSAPP, customer(whatsapp_provider="meta"))
    assert (through_meta.provider, through_meta.recipient) == ("meta", "+15017122661")
    through_twilio = plan(Channel.WHATSAPP, customer(whatsapp_provider="twilio"))
    assert (through_twilio.provider, through_twilio.recipient) == ("twilio", "whatsapp:+15017122661")
    assert plan(Channel.WHATSAPP, customer()).provider == "twilio"  # customers from before Meta


def test_body_and_media_limits_follow_each_chat_app() -> None:
    assert refused(Channel.INSTAGRAM, customer(identities=[{"kind": "instagram", "value": "IG1"}]), body="x" * 1001)
    assert plan(Channel.TELEGRAM, customer(), body="x" * 4096)
    assert refused(Channel.TELEGRAM, customer(), body="x" * 4097).code == "body_too_long"
    two = ["https://example.com/a.png", "https://example.com/b.png"]
    assert refused(Channel.LINE, customer(), media=two).code == "too_many_media"
    assert plan(Channel.WHATSAPP, customer(whatsapp_provider="meta"), body="x" * 4096)
    assert refused(Channel.WHATSAPP, customer(whatsapp_provider="twilio"), body="x" * 1601).code == "body_too_long"


def test_channel_identities_are_read_from_a_channel_and_an_address() -> None:
    assert channel_identity("whatsapp", "whatsapp:+1 501 712 2661").key == "phone#+15017122661"
    assert channel_identity("email", "Ada <ADA@example.com>").key == "email#ada@example.com"
    assert channel_identity("telegram", " 123456789 ").key == "telegram#123456789"
    assert user_id_identity("line", "U" + "f" * 32).kind.value == "line"
    for channel, address in (("telegram", ""), ("telegram", "a b"), ("line", "x" * 129), ("fax", "1")):
        with pytest.raises(InvalidIdentity):
            channel_identity(channel, address)


def test_wechat_counts_utf8_bytes_with_media_links_included() -> None:
    assert plan(Channel.WECHAT, customer(), body="好" * 682)  # 2046 bytes
    assert refused(Channel.WECHAT, customer(), body="好" * 700).code == "body_too_long"
    links = ["https://example.com/" + "a" * 40] * 2
    assert refused(Channel.WECHAT, customer(), body="x" * 1980, media=links).code == "body_too_long"
