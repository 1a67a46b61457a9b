"""SendGrid Inbound Parse through the running stack, both modes, posted as SendGrid posts them."""

from __future__ import annotations

import uuid

import requests

from tests.e2e.conftest import SENDGRID_TOKEN, RunningHub
from tests.support.sendgrid_payloads import Attachment, parsed_payload, raw_payload, request_headers

INBOUND = "/webhooks/sendgrid/inbound"


def post(
    hub: RunningHub, body: bytes, content_type: str, *, token: str | None = None, basic: tuple[str, str] | None = None
) -> requests.Response:
    url = hub.url + INBOUND + (f"?token={token}" if token else "")
    return requests.post(url, data=body, headers=request_headers(content_type, basic_auth=basic), timeout=15)


def address() -> str:
    return f"ada.{uuid.uuid4().hex[:8]}@Example.com"


def test_parsed_mode_email_joins_one_thread_with_attachments_and_threading(running_hub: RunningHub) -> None:
    sender = address()
    message_id = f"<{uuid.uuid4().hex}@mail.example.com>"
    body, content_type = parsed_payload(
        from_=f"Ada Lovelace <{sender}>",
        to="support@hub.example.com",
        subject="Order 42",
        text="Where is my order?",
        message_id=message_id,
        in_reply_to="<earlier@hub.example.com>",
        attachments=[Attachment("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")],
    )

    response = post(running_hub, body, content_type, basic=("parse", SENDGRID_TOKEN))

    assert response.status_code == 200, response.text
    customer = running_hub.customer_by_email(sender.upper())
    assert customer is not None and customer["name"] == "Ada Lovelace"
    [message] = running_hub.messages(customer["conversation_id"])
    assert (message["channel"], message["subject"], message["body"]) == ("email", "Order 42", "Where is my order?")
    assert message["email"]["message_id"] == message_id
    assert message["email"]["in_reply_to"] == "<earlier@hub.example.com>"
    assert message["media"][0]["filename"] == "receipt.pdf" and message["media"][0]["size"] == 13

    retry = post(running_hub, body, content_type, basic=("parse", SENDGRID_TOKEN))
    assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
    assert len(running_hub.messages(customer["conversation_id"])) == 1


def test_raw_mode_and_html_only_email_with_the_query_token(running_hub: RunningHub) -> None:
    sender = address()
    body, content_type = raw_payload(
        from_=sender, to="support@hub.example.com", subject="Hi", text="", html="<p>Hello <b>there</b></p>"
    )

    response = post(running_hub, body, content_type, token=SENDGRID_TOKEN)

    assert response.status_code == 200, response.text
    customer = running_hub.customer_by_email(sender)
    assert customer is not None
    [message] = running_hub.messages(customer["conversation_id"])
    assert message["body"].strip() == "Hello there"


def test_wrong_or_missing_token_is_403_and_stores_nothing(running_hub: RunningHub) -> None:
    sender = address()
    body, content_type = parsed_payload(from_=sender, to="support@hub.example.com", subject="x", text="y")

    for response in (
        post(running_hub, body, content_type),
        post(running_hub, body, content_type, token="guess"),
        post(running_hub, body, content_type, basic=("parse", "guess")),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert running_hub.customer_by_email(sender) is None
    assert SENDGRID_TOKEN not in running_hub.log()


def test_malformed_multipart_is_400_with_a_reason(running_hub: RunningHub) -> None:
    for body, content_type in (
        (b"garbage", "multipart/form-data; boundary=xYzZY"),
        (
            b'--xYzZY\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--xYzZY--\r\n',
            "multipart/form-data; boundary=xYzZY",
        ),
        (b"", "multipart/form-data"),
    ):
        response = post(running_hub, body, content_type, token=SENDGRID_TOKEN)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["message"]
