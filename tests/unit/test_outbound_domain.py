"""The one outbound path's decisions, pure: consent on every channel for every purpose, windows by
purpose, templates, and template parameter order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.outbound import OutboundMessage, Purpose, Template, plan
from chalicelib.domain.replies import HUMAN_AGENT_TAG, RefusalKind, Refused
from tests.support.channel_rules import rules_for

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EVERY_CHANNEL = (
    Channel.SMS,
    Channel.WHATSAPP,
    Channel.EMAIL,
    Channel.WEBCHAT,
    Channel.MESSENGER,
    Channel.INSTAGRAM,
    Channel.TELEGRAM,
    Channel.LINE,
    Channel.WECHAT,
)


def customer(**overrides: Any) -> Customer:
    recent = NOW - timedelta(minutes=5)
    fields: dict[str, Any] = {
        "id": "cus_1",
        "conversation_id": "conv_1",
        "phone": "+15017122661",
        "email": "ada@example.com",
        "identities": [
            {"kind": "phone", "value": "+15017122661"},
            {"kind": "webchat", "value": "vis_1"},
            {"kind": "telegram", "value": "111"},
            {"kind": "messenger", "value": "PSID-1"},
            {"kind": "instagram", "value": "IGSID-1"},
            {"kind": "wechat", "value": "oOPENID"},
            {"kind": "line", "value": "U" + "a" * 32},
        ],
        "last_channel": Channel.SMS,
        "last_inbound_by_channel": {channel.value: recent for channel in EVERY_CHANNEL},
        "created_at": NOW - timedelta(days=50),
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Customer(**fields)


def planned(purpose: Purpose, channel: Channel, who: Customer, **fields: Any) -> Any:
    subject = "Hello" if channel is Channel.EMAIL else None
    return plan(
        OutboundMessage(purpose=purpose, text="hello", channel=channel, subject=subject, **fields),
        who,
        channel,
        NOW,
        None,
        rules_for(channel, who.whatsapp_provider),
    )


@pytest.mark.parametrize("channel", EVERY_CHANNEL)
@pytest.mark.parametrize("purpose", [p for p in Purpose if p is not Purpose.CONSENT_ANSWER])
def test_nothing_is_sent_on_a_channel_the_customer_opted_out_of(purpose: Purpose, channel: Channel) -> None:
    """STOP, email unsubscribe, a LINE unfollow, a Telegram block: every purpose, every channel."""
    opted_out = customer(opted_out={channel.value: NOW - timedelta(hours=1)})
    assert planned(purpose, channel, customer()).channel is channel  # reachable otherwise

    with pytest.raises(Refused) as refused:
        planned(purpose, channel, opted_out)

    assert (refused.value.kind, refused.value.code) == (RefusalKind.UNPROCESSABLE, "opted_out")
    assert channel.value in refused.value.message


def test_the_answer_to_an_opt_out_is_the_one_message_that_still_goes_out() -> None:
    stopped = customer(opted_out={"sms": NOW})
    assert planned(Purpose.CONSENT_ANSWER, Channel.SMS, stopped).recipient == "+15017122661"


def test_a_human_may_answer_messenger_for_a_week_a_notification_only_for_a_day() -> None:
    two_days = customer(last_inbound_by_channel={"messenger": NOW - timedelta(days=2)})

    assert planned(Purpose.AGENT_REPLY, Channel.MESSENGER, two_days).message_tag == HUMAN_AGENT_TAG
    with pytest.raises(Refused) as refused:
        planned(Purpose.NOTIFICATION, Channel.MESSENGER, two_days)
    assert refused.value.code == "messaging_window_closed"


def test_an_answer_to_what_the_customer_just_wrote_ignores_windows_only_a_template_opens_whatsapp() -> None:
    stale = customer(last_inbound_by_channel={"whatsapp": NOW - timedelta(days=3)})

    with pytest.raises(Refused) as refused:
        planned(Purpose.AGENT_REPLY, Channel.WHATSAPP, stale)
    assert refused.value.code == "whatsapp_window_closed"
    assert planned(Purpose.LINK_REFUSAL, Channel.WHATSAPP, stale).channel is Channel.WHATSAPP
    template = Template(preview="Your order is ready", params={"1": "Ada"}, content_sid="HX" + "0" * 32)
    sent = planned(Purpose.NOTIFICATION, Channel.WHATSAPP, stale, template=template)
    assert sent.body == "Your order is ready"


def test_wechat_allows_48_hours_for_everyone() -> None:
    late = customer(last_inbound_by_channel={"wechat": NOW - timedelta(hours=49)})
    for purpose in (Purpose.AGENT_REPLY, Purpose.NOTIFICATION, Purpose.LINK_INVITATION):
        with pytest.raises(Refused):
            planned(purpose, Channel.WECHAT, late)


@pytest.mark.parametrize(
    ("channel", "to", "kept"),
    [
        (Channel.SMS, "+14155238886", True),
        (Channel.SMS, "12345", True),  # a short code sends too
        (Channel.WHATSAPP, "whatsapp:+14155238886", True),
        (Channel.EMAIL, "support@hub.example.com", True),
        (Channel.EMAIL, "undisclosed-recipients:;", False),  # a garbled To is never a sender
        (Channel.TELEGRAM, "bot", False),  # chat apps answer from the bot or page itself
        (Channel.SMS, "  ", False),
    ],
)
def test_the_business_address_a_customer_wrote_to_is_kept_where_a_reply_can_come_from_it(
    channel: Channel, to: str, kept: bool
) -> None:
    from chalicelib.domain.customers import answers_from
    from chalicelib.domain.identity import Identity, IdentityKind
    from chalicelib.domain.messages import InboundMessage

    message = InboundMessage(
        provider="x",
        provider_message_id="1",
        channel=channel,
        sender=Identity(kind=IdentityKind.PHONE, value="+15017122661"),
        sender_address="+15017122661",
        recipient_address=to,
    )
    assert answers_from(message) is kept


def test_every_channel_has_the_rules_of_the_module_that_carries_it() -> None:
    from chalicelib.channels import registry
    from chalicelib.domain.replies import provider_for

    for channel in Channel:
        for whatsapp_provider in (None, "meta"):
            module = registry.channel(provider_for(channel, whatsapp_provider))
            assert channel.value in module.RULES, f"{module.__name__} carries {channel.value} but states no rules"
    for provider in registry.CHANNELS:
        module = registry.channel(provider)
        assert provider == module.PROVIDER
        for name in (
            ("verify", "parse", "acknowledgement", "missing_settings", "send")
            if provider != "webchat"
            else (
                "missing_settings",
                "send",
            )
        ):
            assert callable(getattr(module, name)), f"{provider} lacks {name}"
