"""Agent replies, pure: channel choice, addresses, the WhatsApp window, content limits, email
threading and subjects, the request model and the Idempotency-Key fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.api.reply_models import ReplyRequest, validation_problem
from chalicelib.channels.sendgrid import mail_payload
from chalicelib.domain.channel_rules import check_content, window_tag
from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, EmailThreading, Message
from chalicelib.domain.replies import (
    InboundEmail,
    RefusalKind,
    Refused,
    check_idempotency_key,
    choose_channel,
    email_text,
    recipient_for,
    reply_subject,
    reply_threading,
    request_fingerprint,
    whatsapp_address,
)
from tests.support.channel_rules import rules_for
from tests.support.reply_plans import plan_reply

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def customer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": "cus_1",
        "conversation_id": "conv_1",
        "phone": "+15017122661",
        "email": "ada@example.com",
        "last_channel": Channel.WHATSAPP,
        "last_inbound_by_channel": {"whatsapp": NOW - timedelta(hours=1), "sms": NOW - timedelta(days=3)},
        "created_at": NOW - timedelta(days=10),
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Customer(**fields)


def refusal(call: Any, *args: Any, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as raised:
        call(*args, **kwargs)
    return raised.value


# --- Channel and address ------------------------------------------------------------------------


def test_no_channel_means_the_channel_the_customer_last_wrote_from() -> None:
    assert choose_channel(None, customer(last_channel=Channel.SMS)) is Channel.SMS
    assert choose_channel(None, customer(last_channel=Channel.EMAIL)) is Channel.EMAIL


def test_an_explicit_channel_wins_and_is_read_case_insensitively() -> None:
    assert choose_channel("email", customer()) is Channel.EMAIL
    assert choose_channel(" SMS ", customer()) is Channel.SMS


@pytest.mark.parametrize("requested", ["telegram", "webchat", "", "voice"])
def test_an_unsupported_channel_is_a_422(requested: str) -> None:
    refused = refusal(choose_channel, requested, customer())
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "unsupported_channel")
    assert "sms, whatsapp, email" in refused.message


def test_a_customer_who_never_wrote_needs_a_channel() -> None:
    refused = refusal(choose_channel, None, customer(last_channel=None))
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "no_channel")


def test_recipients_per_channel() -> None:
    ada = customer()
    assert recipient_for(Channel.SMS, ada) == "+15017122661"
    assert recipient_for(Channel.WHATSAPP, ada) == "whatsapp:+15017122661"
    assert recipient_for(Channel.EMAIL, ada) == "ada@example.com"


@pytest.mark.parametrize(
    ("channel", "missing"),
    [(Channel.EMAIL, {"email": None}), (Channel.SMS, {"phone": None}), (Channel.WHATSAPP, {"phone": None})],
)
def test_a_channel_without_an_address_is_refused(channel: Channel, missing: dict[str, Any]) -> None:
    refused = refusal(recipient_for, channel, customer(**missing))
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "no_address_for_channel")


@pytest.mark.parametrize(
    "written", ["+14155238886", "whatsapp:+14155238886", "WhatsApp:+14155238886", " +14155238886 "]
)
def test_whatsapp_prefix_is_added_once(written: str) -> None:
    assert whatsapp_address(written) == "whatsapp:+14155238886"


# --- WhatsApp's 24-hour window ------------------------------------------------------------------


def whatsapp_window(who: Customer) -> str | None:
    """What Twilio's WhatsApp rules let an agent's free-form reply out with, now."""
    return window_tag(rules_for(Channel.WHATSAPP), who, Channel.WHATSAPP, NOW, human=True, template=False)


def test_whatsapp_window_is_open_for_24_hours_after_the_customer_wrote() -> None:
    wrote = {"whatsapp": NOW - timedelta(hours=24)}
    assert whatsapp_window(customer(last_inbound_by_channel=wrote)) is None


@pytest.mark.parametrize(
    "last_inbound",
    [{"whatsapp": NOW - timedelta(hours=24, seconds=1)}, {"sms": NOW}, {}],
    ids=["25h-ago", "never-on-whatsapp", "never"],
)
def test_whatsapp_window_closed_asks_for_a_template(last_inbound: dict[str, datetime]) -> None:
    refused = refusal(whatsapp_window, customer(last_inbound_by_channel=last_inbound))
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "whatsapp_window_closed")
    assert "template" in refused.message


def test_the_window_applies_to_whatsapp_only() -> None:
    stale = customer(last_inbound_by_channel={"whatsapp": NOW - timedelta(days=5)})
    plan = plan_reply(channel=Channel.SMS, customer=stale, body="hi", media_urls=[], subject=None, now=NOW)
    assert plan.recipient == "+15017122661"
    refused = refusal(
        plan_reply, channel=Channel.WHATSAPP, customer=stale, body="hi", media_urls=[], subject=None, now=NOW
    )
    assert refused.code == "whatsapp_window_closed"


# --- Content ------------------------------------------------------------------------------------


def test_body_or_media_is_needed() -> None:
    refused = refusal(check_content, Channel.SMS, rules_for(Channel.SMS), "  \n", [], None)
    assert (refused.kind, refused.code) == (RefusalKind.INVALID, "invalid_request")
    check_content(Channel.SMS, rules_for(Channel.SMS), "", ["https://example.com/a.png"], None)


def test_body_limits_are_twilios_for_phone_channels_and_100k_for_email() -> None:
    check_content(Channel.SMS, rules_for(Channel.SMS), "x" * 1600, [], None)
    check_content(Channel.EMAIL, rules_for(Channel.EMAIL), "x" * 100_000, [], None)
    for channel in (Channel.SMS, Channel.WHATSAPP):
        refused = refusal(check_content, channel, rules_for(channel), "x" * 1601, [], None)
        assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "body_too_long")
        assert "1600" in refused.message
    assert (
        refusal(check_content, Channel.EMAIL, rules_for(Channel.EMAIL), "x" * 100_001, [], None).code == "body_too_long"
    )


def test_a_subject_only_goes_by_email() -> None:
    refused = refusal(check_content, Channel.SMS, rules_for(Channel.SMS), "hi", [], "Hello")
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "subject_not_supported")


def test_email_media_become_links_after_the_body() -> None:
    assert email_text("Here it is", []) == "Here it is"
    assert email_text("Here it is\n", ["https://e.com/a.pdf", "https://e.com/b.png"]) == (
        "Here it is\n\nhttps://e.com/a.pdf\nhttps://e.com/b.png"
    )
    assert email_text("", ["https://e.com/a.pdf"]) == "https://e.com/a.pdf"


# --- Email subject and threading ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        ("Order 42", "Re: Order 42"),
        ("Re: Order 42", "Re: Order 42"),
        ("RE: Order 42", "RE: Order 42"),
        ("re:Order 42", "re:Order 42"),
        ("Re[2]: Order 42", "Re[2]: Order 42"),
        ("Order 42\r\n  (urgent)", "Re: Order 42 (urgent)"),
        ("Regarding order 42", "Re: Regarding order 42"),
    ],
)
def test_reply_subject_prefixes_re_once(theirs: str, expected: str) -> None:
    assert reply_subject(None, theirs) == expected


def test_a_given_subject_is_used_as_is_on_one_line() -> None:
    assert reply_subject("Your refund", "Order 42") == "Your refund"
    assert reply_subject("Your\r\nrefund", None) == "Your refund"
    assert reply_subject("   ", "Order 42") == "Re: Order 42"


def test_no_subject_and_nothing_to_reply_to_is_a_422() -> None:
    refused = refusal(reply_subject, None, None)
    assert (refused.kind, refused.code) == (RefusalKind.UNPROCESSABLE, "subject_required")


def test_threading_replies_to_their_message_id_and_extends_their_references() -> None:
    theirs = EmailThreading(message_id="<m3@x>", in_reply_to="<m2@x>", references=["<m1@x>", "<m2@x>"])

    ours = reply_threading(theirs)

    assert ours is not None
    assert ours.in_reply_to == "<m3@x>"
    assert ours.references == ["<m1@x>", "<m2@x>", "<m3@x>"]
    assert ours.message_id is None


def test_threading_without_their_message_id_is_none_and_references_are_deduplicated_and_capped() -> None:
    assert reply_threading(None) is None
    assert reply_threading(EmailThreading(message_id=None, references=["<a@x>"])) is None
    repeated = reply_threading(EmailThreading(message_id="<b@x>", references=["<a@x>", "<b@x>", "<a@x>"]))
    assert repeated is not None and repeated.references == ["<a@x>", "<b@x>"]
    long = reply_threading(EmailThreading(message_id="<m99@x>", references=[f"<m{i}@x>" for i in range(60)]))
    assert long is not None
    assert len(long.references) == 20
    assert long.references[0] == "<m0@x>" and long.references[-1] == "<m99@x>"


def test_email_plan_threads_under_the_latest_email() -> None:
    latest = InboundEmail(subject="Order 42", threading=EmailThreading(message_id="<m1@x>"))

    plan = plan_reply(
        channel=Channel.EMAIL,
        customer=customer(),
        body="Shipped today.",
        media_urls=[],
        subject=None,
        now=NOW,
        latest_email=latest,
    )

    assert (plan.recipient, plan.subject, plan.provider) == ("ada@example.com", "Re: Order 42", "sendgrid")
    assert plan.email == EmailThreading(in_reply_to="<m1@x>", references=["<m1@x>"])


def test_sendgrid_payload_carries_threading_headers_and_the_hub_id() -> None:
    payload = mail_payload(
        from_email="support@hub.example.com",
        from_name="Support",
        to_email="ada@example.com",
        to_name="Ada\r\nBcc: x@evil.example",
        subject="Re: Order 42",
        text="Shipped.",
        in_reply_to="<m2@x>",
        references=["<m1@x>", "<m2@x>"],
        custom_args={"hub_message_id": "msg_1"},
    )

    assert payload["personalizations"] == [{"to": [{"email": "ada@example.com", "name": "Ada Bcc: x@evil.example"}]}]
    assert payload["from"] == {"email": "support@hub.example.com", "name": "Support"}
    assert payload["headers"] == {"In-Reply-To": "<m2@x>", "References": "<m1@x> <m2@x>"}
    assert payload["custom_args"] == {"hub_message_id": "msg_1"}
    assert payload["content"] == [{"type": "text/plain", "value": "Shipped."}]
    assert "headers" not in mail_payload(from_email="a@x.com", to_email="b@x.com", subject="s", text="t")


# --- Request model and idempotency --------------------------------------------------------------


def test_request_model_forbids_unknown_fields_and_non_https_media() -> None:
    assert ReplyRequest.model_validate({"body": "hi", "agent_id": "a1"}).channel is None
    for bad in (
        {"body": "hi", "agent_id": "a1", "to": "+1555"},
        {"body": "hi"},
        {"body": "hi", "agent_id": ""},
        {"body": "", "agent_id": "a1"},
        {"agent_id": "a1"},
        {"body": "hi", "agent_id": "a1", "media_urls": ["http://example.com/a.png"]},
        {"body": "hi", "agent_id": "a1", "media_urls": ["javascript:alert(1)"]},
        {"body": "hi", "agent_id": "a1", "media_urls": [f"https://e.com/{i}" for i in range(11)]},
        {"body": 5, "agent_id": "a1"},
    ):
        with pytest.raises(ValidationError):
            ReplyRequest.model_validate(bad)


def test_validation_problem_is_one_readable_line() -> None:
    with pytest.raises(ValidationError) as raised:
        ReplyRequest.model_validate({"body": " ", "agent_id": "a1"})
    assert validation_problem(raised.value) == "body: give a non-empty 'body' or at least one of 'media_urls'"


def test_fingerprint_binds_conversation_and_body_and_ignores_key_order_and_defaults() -> None:
    one = ReplyRequest.model_validate({"body": "hi", "agent_id": "a1"}).fingerprint_data()
    same = ReplyRequest.model_validate({"agent_id": "a1", "body": "hi", "media_urls": []}).fingerprint_data()
    other = ReplyRequest.model_validate({"agent_id": "a1", "body": "hi!"}).fingerprint_data()

    assert request_fingerprint("conv_1", one) == request_fingerprint("conv_1", same)
    assert request_fingerprint("conv_1", one) != request_fingerprint("conv_1", other)
    assert request_fingerprint("conv_1", one) != request_fingerprint("conv_2", one)


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\t", "é"])
def test_bad_idempotency_keys_are_a_400(key: str) -> None:
    assert refusal(check_idempotency_key, key).kind is RefusalKind.INVALID


def test_good_idempotency_keys_pass() -> None:
    assert check_idempotency_key("8e03978e-40d5-43e8-bc93-6894a57f9324") == "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert check_idempotency_key("x" * 255) == "x" * 255


def test_agent_message_keeps_the_agent_in_its_json() -> None:
    message = Message(
        id="msg_01J0000000000000000000000",
        conversation_id="conv_1",
        customer_id="cus_1",
        channel=Channel.SMS,
        direction=Direction.OUTBOUND,
        status=DeliveryStatus.QUEUED,
        created_at=NOW,
        agent_id="grace",
    )
    assert message.model_dump(mode="json")["agent_id"] == "grace"
    assert Message.model_validate_json(message.model_dump_json()) == message
