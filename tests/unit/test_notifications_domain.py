"""Notifications as pure decisions: the request, templates, and what each channel can send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.api.notification_models import NotificationRequest, notification_view
from chalicelib.domain.consent import Block
from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.notifications import (
    Attempt,
    AttemptStatus,
    Delivery,
    Notification,
    NotificationDue,
    NotificationStatus,
    TemplateCatalog,
    TemplateError,
    TemplateRef,
    plan_delivery,
    render,
)
from tests.support.channel_rules import rules_for

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
CATALOG = TemplateCatalog.from_json(
    '{"order_ready": "HX' + "a" * 32 + '"}',
    '{"order_ready": "Hi {name}, order {order} is ready.",'
    ' "invoice": {"text": "Invoice {number} is attached.", "subject": "Invoice {number}"}}',
)


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


def notification(**fields: Any) -> Notification:
    base: dict[str, Any] = {
        "id": "ntf_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "customer_id": "cus_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "conversation_id": "conv_01JABCDEFGHJKMNPQRSTVWXYZ0",
        "channels": [Channel.WHATSAPP, Channel.SMS, Channel.EMAIL],
        "status": NotificationStatus.SENDING,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Notification(**{**base, **fields})


def plan(n: Notification, c: Customer, channel: Channel, **kwargs: Any) -> Delivery | Block:
    """As services/notifications.py plans: with the rules of the channel's module."""
    rules = rules_for(channel, c.whatsapp_provider)
    return plan_delivery(n, c, channel, NOW, CATALOG, business_name="Acme", rules=rules, **kwargs)


# --- The request ------------------------------------------------------------------------------------


def test_a_request_names_one_customer_reference_and_something_to_send() -> None:
    request = NotificationRequest.model_validate(
        {"customer": {"phone": "+15017122661"}, "text": "Hi", "channels": ["WhatsApp", "sms"]}
    )
    assert request.channel_list == [Channel.WHATSAPP, Channel.SMS]
    assert request.urgent is False
    templated = NotificationRequest.model_validate(
        {"customer": {"id": "cus_x"}, "template": {"name": "order_ready", "params": {"order": 42, "vip": True}}}
    )
    assert templated.template is not None and templated.template.string_params() == {"order": "42", "vip": "true"}
    assert templated.channel_list is None


@pytest.mark.parametrize(
    "body",
    [
        {"customer": {}, "text": "Hi"},
        {"customer": {"phone": "+1", "email": "a@b.co"}, "text": "Hi"},
        {"customer": {"id": "cus_x"}},
        {"customer": {"id": "cus_x"}, "text": "   "},
        {"customer": {"id": "cus_x"}, "text": "Hi", "channels": ["fax"]},
        {"customer": {"id": "cus_x"}, "text": "Hi", "channels": ["sms", "SMS"]},
        {"customer": {"id": "cus_x"}, "text": "Hi", "channels": []},
        {"customer": {"id": "cus_x"}, "text": "Hi", "priority": "high"},
        {"customer": {"id": "cus_x"}, "template": {"name": ""}},
        {"customer": {"id": "cus_x"}, "template": {"name": "t", "params": {"x": {"nested": 1}}}},
    ],
    ids=[
        "no-ref",
        "two-refs",
        "no-content",
        "blank-text",
        "unknown-channel",
        "repeated-channel",
        "empty-channels",
        "extra-field",
        "empty-template-name",
        "nested-param",
    ],
)
def test_malformed_requests_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NotificationRequest.model_validate(body)


# --- Templates -----------------------------------------------------------------------------------------


def test_text_templates_render_plain_placeholders_only() -> None:
    assert render("Hi {name}, {name}!", {"name": "Ada"}) == "Hi Ada, Ada!"
    with pytest.raises(TemplateError, match="needs the params order"):
        render("Order {order}", {})
    for hostile in ("{name.__class__}", "{0}", "{name!r}", "{name:>10}", "{name[0]}", "{unclosed"):
        with pytest.raises(TemplateError):
            TemplateCatalog.from_json("", '{"t": "' + hostile + '"}')


def test_template_settings_are_checked_when_read() -> None:
    assert TemplateCatalog.from_json("", "") == TemplateCatalog()
    for whatsapp, text in (("not json", ""), ('["x"]', ""), ('{"t": "SM123"}', ""), ("", '{"t": 5}')):
        with pytest.raises(TemplateError):
            TemplateCatalog.from_json(whatsapp, text)
    assert CATALOG.text["invoice"].subject == "Invoice {number}"


# --- Planning a delivery ----------------------------------------------------------------------------------


def test_whatsapp_inside_the_window_sends_free_text() -> None:
    writes = customer(last_inbound_by_channel={"whatsapp": NOW - timedelta(hours=2)})
    result = plan(notification(text="Your order shipped"), writes, Channel.WHATSAPP)
    assert result == Delivery(Channel.WHATSAPP, "whatsapp:+15017122661", "Your order shipped")


def test_whatsapp_outside_the_window_needs_a_mapped_template() -> None:
    silent = customer(last_inbound_by_channel={"whatsapp": NOW - timedelta(hours=25)})
    refused = plan(notification(text="Your order shipped"), silent, Channel.WHATSAPP)
    assert isinstance(refused, Block) and refused.code == "whatsapp_window_closed"
    assert "TWILIO_WHATSAPP_TEMPLATES" in refused.reason
    unmapped = plan(
        notification(template=TemplateRef(name="invoice", params={"number": "7"})), silent, Channel.WHATSAPP
    )
    assert isinstance(unmapped, Block) and "'invoice' has no Content SID" in unmapped.reason
    # a held notification leaves the window to the moment it is sent
    assert isinstance(plan(notification(text="x"), silent, Channel.WHATSAPP, check_window=False), Delivery)

    templated = notification(template=TemplateRef(name="order_ready", params={"name": "Ada", "order": "42"}))
    sent = plan(templated, silent, Channel.WHATSAPP)
    assert isinstance(sent, Delivery)
    assert (sent.content_sid, sent.content_variables) == ("HX" + "a" * 32, {"name": "Ada", "order": "42"})
    assert sent.body == "Hi Ada, order 42 is ready."  # the thread shows the text version


def test_sms_and_email_render_text_templates_or_refuse_clearly() -> None:
    invoice = notification(template=TemplateRef(name="invoice", params={"number": "7"}))
    sms = plan(invoice, customer(), Channel.SMS)
    email = plan(invoice, customer(), Channel.EMAIL)
    assert isinstance(sms, Delivery) and (sms.body, sms.subject) == ("Invoice 7 is attached.", None)
    assert isinstance(email, Delivery) and (email.body, email.subject) == ("Invoice 7 is attached.", "Invoice 7")

    unknown = plan(notification(template=TemplateRef(name="nope")), customer(), Channel.SMS)
    assert isinstance(unknown, Block) and unknown.code == "template_not_available"
    assert "NOTIFICATION_TEMPLATES" in unknown.reason
    missing = plan(notification(template=TemplateRef(name="invoice")), customer(), Channel.EMAIL)
    assert isinstance(missing, Block) and missing.code == "template_params"
    # with free text as well, a channel without the template sends the text
    both = plan(notification(text="Plain", template=TemplateRef(name="nope")), customer(), Channel.SMS)
    assert isinstance(both, Delivery) and both.body == "Plain"


def test_email_subject_defaults_to_the_business_and_sms_length_is_checked() -> None:
    email = plan(notification(text="Hello"), customer(), Channel.EMAIL)
    assert (
        isinstance(email, Delivery) and email.subject == "A message from Acme" and email.recipient == "ada@example.com"
    )
    long = plan(notification(text="x" * 1601), customer(), Channel.SMS)
    assert isinstance(long, Block) and long.code == "body_too_long"


def test_consent_and_address_come_first() -> None:
    opted = customer(opted_out={"sms": NOW})
    assert plan(notification(text="x"), opted, Channel.SMS) == Block(
        "opted_out", "the customer opted out of sms at 2025-01-15T12:00:00Z"
    )
    assert plan(notification(text="x"), customer(email=None), Channel.EMAIL).code == "no_address"  # type: ignore[union-attr]


# --- The notification's state ---------------------------------------------------------------------------------


def test_fallback_moves_forward_through_the_channels_never_back() -> None:
    fresh = notification()
    assert fresh.remaining_channels() == [Channel.WHATSAPP, Channel.SMS, Channel.EMAIL]
    attempts = [
        Attempt(channel=Channel.WHATSAPP, status=AttemptStatus.SKIPPED, at=NOW, code="whatsapp_window_closed"),
        Attempt(channel=Channel.SMS, status=AttemptStatus.UNDELIVERED, at=NOW, message_id="msg_1"),
    ]
    assert notification(attempts=attempts).remaining_channels() == [Channel.EMAIL]
    assert (
        notification(attempts=[*attempts, Attempt(channel=Channel.EMAIL, status="sent", at=NOW)]).remaining_channels()
        == []
    )


def test_the_view_and_the_timer_message() -> None:
    held = notification(status=NotificationStatus.SCHEDULED, scheduled_for=NOW + timedelta(hours=8))
    view = notification_view(held)
    assert view["status"] == "scheduled" and view["scheduled_for"] == "2025-01-15T20:00:00Z"
    assert view["channel"] is None and view["attempts"] == [] and view["channels"] == ["whatsapp", "sms", "email"]
    assert NotificationDue(notification_id=held.id).model_dump() == {
        "type": "notification_due",
        "notification_id": held.id,
    }


# --- Chat apps -------------------------------------------------------------------------------------


def chat_customer(**fields: Any) -> Customer:
    identities = [{"kind": "telegram", "value": "42"}, {"kind": "messenger", "value": "PSID-9"}]
    return customer(identities=identities, **fields)


def test_telegram_and_line_take_notifications_at_any_time() -> None:
    sent = plan(notification(text="Your order shipped"), chat_customer(), Channel.TELEGRAM)
    assert isinstance(sent, Delivery)
    assert (sent.provider, sent.recipient, sent.body) == ("telegram", "42", "Your order shipped")
    assert plan(notification(text="Hi"), customer(), Channel.LINE) == Block(
        "no_address", "the customer has never written on line"
    )


def test_messenger_and_wechat_notifications_only_inside_the_customers_window() -> None:
    recent = chat_customer(last_inbound_by_channel={"messenger": NOW - timedelta(hours=3)})
    assert isinstance(plan(notification(text="Hi"), recent, Channel.MESSENGER), Delivery)
    late = chat_customer(last_inbound_by_channel={"messenger": NOW - timedelta(hours=30)})
    blocked = plan(notification(text="Hi"), late, Channel.MESSENGER)
    assert isinstance(blocked, Block) and blocked.code == "messaging_window_closed"


def test_whatsapp_cloud_customers_get_meta_templates_outside_the_window() -> None:
    cloud = customer(whatsapp_provider="meta", last_inbound_by_channel={"whatsapp": NOW - timedelta(days=3)})
    templated = notification(template={"name": "order_ready", "params": {"2": "42", "1": "Ada", "10": "x"}})
    sent = plan(templated, cloud, Channel.WHATSAPP)
    assert isinstance(sent, Delivery)
    assert (sent.provider, sent.meta_template, sent.recipient) == ("meta", "order_ready", "+15017122661")
    assert sent.content_sid is None and sent.content_variables == {"2": "42", "1": "Ada", "10": "x"}
    blocked = plan(notification(text="free text"), cloud, Channel.WHATSAPP)
    assert isinstance(blocked, Block) and blocked.code == "whatsapp_window_closed"
    inside = customer(whatsapp_provider="meta", last_inbound_by_channel={"whatsapp": NOW - timedelta(hours=1)})
    free = plan(notification(text="free text"), inside, Channel.WHATSAPP)
    assert isinstance(free, Delivery) and (free.provider, free.meta_template) == ("meta", None)


def test_template_parameters_go_in_number_order() -> None:
    from chalicelib.domain.outbound import ordered_parameters, parameter_order

    assert sorted(["10", "2", "name", "1"], key=parameter_order) == ["1", "2", "10", "name"]
    assert ordered_parameters({"10": "j", "2": "b", "name": "n", "1": "a"}) == ("a", "b", "j", "n")
