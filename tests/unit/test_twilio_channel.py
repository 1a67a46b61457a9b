"""Twilio webhooks: verified exactly as Twilio signs them, parsed into the hub's messages."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from chalicelib.channels import twilio
from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.domain.messages import Channel, DeliveryStatus
from tests.support.twilio_signature import body_sha256, sign_form, sign_json

EVENTS = Path(__file__).parents[2] / "events" / "twilio"
TOKEN = "12345678901234567890123456789012"
BASE = "https://hub.example.com"
FORM = "application/x-www-form-urlencoded"


def event(name: str) -> list[tuple[str, str]]:
    return parse_qsl((EVENTS / name).read_text().strip(), keep_blank_values=True)


def signed_request(
    pairs: list[tuple[str, str]], path: str = "/webhooks/twilio/messaging", **overrides: str
) -> WebhookRequest:
    body = urlencode(pairs).encode()
    signature = sign_form(BASE + path, pairs, TOKEN)
    headers = {"content-type": FORM, "x-twilio-signature": signature, **overrides}
    return WebhookRequest(method="POST", path=path, headers=headers, body=body)


def test_a_correctly_signed_sms_verifies_and_parses() -> None:
    params = twilio.verified_params(signed_request(event("inbound_sms.form")), TOKEN, BASE)
    message = twilio.parse_inbound(params)

    assert message.channel is Channel.SMS
    assert message.sender.value == "+15017122661"
    assert message.provider_message_id == "SM1f8a3c2b9e4d5f6a7b8c9d0e1f2a3b4c"
    assert message.body == "Hi, my order #42 has not arrived"
    assert message.recipient_address == "+14155238886"
    assert message.dedupe_key == "twilio:SM1f8a3c2b9e4d5f6a7b8c9d0e1f2a3b4c"


def test_whatsapp_keeps_profile_name_unicode_and_the_phone_identity() -> None:
    message = twilio.parse_inbound(twilio.verified_params(signed_request(event("inbound_whatsapp.form")), TOKEN, BASE))

    assert message.channel is Channel.WHATSAPP
    assert message.sender.value == "+15017122661"
    assert message.sender_address == "whatsapp:+15017122661"
    assert message.recipient_address == "whatsapp:+14155238886"
    assert message.profile_name == "Ada Lovelace"
    assert message.body == "Merhaba, çok teşekkürler 🙏"


def test_mms_media_are_kept_in_order_with_their_types() -> None:
    message = twilio.parse_inbound(twilio.verified_params(signed_request(event("inbound_mms.form")), TOKEN, BASE))

    assert [m.content_type for m in message.media] == ["image/jpeg", "application/pdf"]
    assert message.media[0].url and message.media[0].url.endswith("/Media/ME1")


def test_the_signature_covers_the_query_string() -> None:
    pairs = event("inbound_sms.form")
    path = "/webhooks/twilio/messaging"
    query = [("tenant", "acme")]
    signature = sign_form(f"{BASE}{path}?tenant=acme", pairs, TOKEN)
    request = WebhookRequest(
        "POST", path, {"content-type": FORM, "x-twilio-signature": signature}, urlencode(pairs).encode(), query
    )
    assert twilio.verified_params(request, TOKEN, BASE)["From"] == "+15017122661"

    without_query = WebhookRequest("POST", path, request.headers, request.body, [])
    with pytest.raises(WebhookRejected):
        twilio.verified_params(without_query, TOKEN, BASE)


def test_json_bodies_are_verified_with_body_sha256() -> None:
    body = json.dumps({"MessageSid": "SMjson1", "From": "+15017122661", "To": "+14155238886", "Body": "hi"}).encode()
    path = "/webhooks/twilio/messaging"
    digest = body_sha256(body)
    signature = sign_json(f"{BASE}{path}?bodySHA256={digest}", TOKEN)
    headers = {"content-type": "application/json", "x-twilio-signature": signature}
    request = WebhookRequest("POST", path, headers, body, [("bodySHA256", digest)])

    assert twilio.parse_inbound(twilio.verified_params(request, TOKEN, BASE)).body == "hi"

    tampered = WebhookRequest("POST", path, headers, body.replace(b'"hi"', b'"ho"'), [("bodySHA256", digest)])
    with pytest.raises(WebhookRejected):
        twilio.verified_params(tampered, TOKEN, BASE)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"x-twilio-signature": ""}, "missing"),
        ({"x-twilio-signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "does not match"),
    ],
)
def test_missing_or_wrong_signatures_are_rejected(change: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        twilio.verified_params(signed_request(event("inbound_sms.form"), **change), TOKEN, BASE)
    assert reason in rejected.value.reason


def test_a_tampered_body_or_another_token_is_rejected() -> None:
    request = signed_request(event("inbound_sms.form"))
    tampered = WebhookRequest(request.method, request.path, request.headers, request.body.replace(b"Hi", b"Yo"))
    with pytest.raises(WebhookRejected):
        twilio.verified_params(tampered, TOKEN, BASE)
    with pytest.raises(WebhookRejected):
        twilio.verified_params(request, "another-token", BASE)
    with pytest.raises(WebhookRejected) as unconfigured:
        twilio.verified_params(request, "", BASE)
    assert "not configured" in unconfigured.value.reason


def test_a_signature_for_another_host_is_rejected() -> None:
    request = signed_request(event("inbound_sms.form"))
    with pytest.raises(WebhookRejected):
        twilio.verified_params(request, TOKEN, "https://attacker.example.com")


def test_invalid_utf8_is_rejected_not_crashed() -> None:
    request = WebhookRequest("POST", "/x", {"content-type": FORM, "x-twilio-signature": "abc"}, b"\xff\xfe")
    with pytest.raises(WebhookRejected):
        twilio.verified_params(request, TOKEN, BASE)


@pytest.mark.parametrize(
    ("remove", "message"),
    [("From", "'From'"), ("To", "'To'"), ("MessageSid", "'MessageSid'")],
)
def test_incomplete_messages_name_the_missing_field(remove: str, message: str) -> None:
    pairs = [
        (k, v)
        for k, v in event("inbound_sms.form")
        if k != remove and not (remove == "MessageSid" and "Sid" in k and k.startswith("Sms"))
    ]
    with pytest.raises(MalformedPayload) as error:
        twilio.parse_inbound(twilio.FormParams(pairs))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("From", "messenger:12345", "unsupported address"),
        ("From", "not-a-number", "phone"),
        ("NumMedia", "x", "NumMedia"),
    ],
)
def test_unusable_values_are_malformed_payloads(field: str, value: str, expected: str) -> None:
    pairs = [(k, value if k == field else v) for k, v in event("inbound_sms.form")]
    with pytest.raises(MalformedPayload) as error:
        twilio.parse_inbound(twilio.FormParams(pairs))
    assert expected in str(error.value)


def test_status_callbacks_parse_with_error_codes() -> None:
    update = twilio.parse_status(
        twilio.verified_params(signed_request(event("status_undelivered.form"), "/webhooks/twilio/status"), TOKEN, BASE)
    )
    assert update.status is DeliveryStatus.UNDELIVERED
    assert update.error_code == "30003"
    assert update.provider_message_id == "SM0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_unknown_statuses_are_refused() -> None:
    with pytest.raises(MalformedPayload, match="unknown 'MessageStatus'"):
        twilio.parse_status(twilio.FormParams([("MessageSid", "SM1"), ("MessageStatus", "exploded")]))
