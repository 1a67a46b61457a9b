"""Agents reply on any channel: services.replies.send_reply against the AWS emulator, with the
real twilio and sendgrid clients talking to the provider sandbox over HTTP.

The clients reach the sandbox through the hub's own settings (TWILIO_API_BASE_URL, through
twilio's `http_client=` extension point, and SENDGRID_API_BASE_URL as sendgrid's `host=`); a few
tests put a small forwarding proxy (`ProviderTap`) between them to count or hold requests.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from chalicelib.domain.identity import email_identity
from chalicelib.domain.messages import Channel, EmailThreading, InboundMessage, utcnow
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_ingest import sms

ACCOUNT_SID = "AC" + "7e" * 16
TWILIO_TOKEN = "test-twilio-token"  # the hub fixture's TWILIO_AUTH_TOKEN: it also verifies callbacks
SENDGRID_KEY = "SG.replies-test-key"
SMS_FROM = "+14155238886"  # also the number the test customers write to (tests.integration.test_ingest.sms)
WHATSAPP_FROM = "+14155238887"  # configured without the whatsapp: prefix; the hub adds it
WRITTEN_TO = SMS_FROM  # the business number the customer wrote to, on SMS and on WhatsApp
HUB_EMAIL = "support@hub.example.com"
CUSTOMER_PHONE = "+15017122661"
PUBLIC = "https://hub.example.com"
AGENT = "grace"


def make_sandbox(callbacks: bool = False) -> ProviderSandbox:
    return ProviderSandbox(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=TWILIO_TOKEN,
        sendgrid_api_key=SENDGRID_KEY,
        simulate_status_callbacks=callbacks,
    ).start()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProviderSandbox]:
    running = make_sandbox()
    yield running
    running.stop()


def point_providers_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("TWILIO_API_BASE_URL", base_url)
    monkeypatch.setenv("SENDGRID_API_BASE_URL", base_url)


@pytest.fixture
def hub_with_providers(hub: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub configured to send through the sandbox, with an agent."""
    from chalicelib.domain.agents import AgentProfile
    from chalicelib.services import agents

    sandbox.clear()
    settings = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "SENDGRID_FROM_EMAIL": HUB_EMAIL,
        "SENDGRID_FROM_NAME": "Acme Support",
        "PROVIDER_TIMEOUT_SECONDS": "5",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TWILIO_MESSAGING_SERVICE_SID", raising=False)
    point_providers_at(monkeypatch, sandbox.url)
    agents.put_agent(AGENT, AgentProfile(name="Grace Hopper"))
    return hub


# --- Helpers ----------------------------------------------------------------------------------------


def reply(conversation_id: str, key: str | None = None, **fields: Any):
    from chalicelib.http.replies import send_reply

    return send_reply(conversation_id, {"agent_id": AGENT, **fields}, key)


def whatsapp_then_sms_customer() -> str:
    """A customer who wrote by SMS, then on WhatsApp: their last channel is WhatsApp."""
    from chalicelib.services.ingest import ingest

    ingest(sms("SMin-1", CUSTOMER_PHONE, "hi by sms"))
    return ingest(sms("SMin-2", f"whatsapp:{CUSTOMER_PHONE}", "hi on whatsapp", profile_name="Ada")).conversation_id


def outbound_messages(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    messages, _ = customers.list_messages(conversation_id, 200, None)
    return [message for message in messages if message.direction == "outbound"]


def outbound_count(conversation_id: str) -> int:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id).outbound_count


def crm_events(hub: Hub, event_type: str | None = None) -> list[dict[str, Any]]:
    """Every event queued for the CRM so far (received and deleted)."""
    sqs = hub.client("sqs")
    url = hub.resources["CRM_EVENTS_QUEUE_URL"]
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            break
        for message in batch:
            found.append(json.loads(message["Body"])["event"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [event for event in found if event_type is None or event["type"] == event_type]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


@dataclass
class ProviderTap:
    """A forwarding proxy in front of the sandbox: counts provider requests and can hold them."""

    url: str
    requests: list[str] = field(default_factory=list)
    held: int = 0
    gate: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def tap(sandbox: ProviderSandbox) -> Iterator[ProviderTap]:
    target = urlsplit(sandbox.url)
    state = ProviderTap(url="")
    state.gate.set()
    lock = threading.Lock()

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.requests.append(self.path)
                state.held += 1
            state.gate.wait(timeout=10)
            with lock:
                state.held -= 1
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
            finally:
                upstream.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.gate.set()
    server.shutdown()
    server.server_close()


# --- Channel choice ---------------------------------------------------------------------------------


def test_reply_without_channel_goes_to_the_last_channel(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    # Given a customer whose last message came on WhatsApp
    conversation_id = whatsapp_then_sms_customer()
    crm_events(hub_with_providers)  # (ingest's own events are not this test's concern)

    # When an agent replies without naming a channel
    outcome = reply(conversation_id, body="Your order ships today")

    # Then Twilio got a WhatsApp message from the number the customer wrote to, with the status callback
    [record] = sandbox.records()
    assert record["provider"] == "twilio"
    assert record["request"] == {
        "To": f"whatsapp:{CUSTOMER_PHONE}",
        "From": f"whatsapp:{WRITTEN_TO}",
        "Body": "Your order ships today",
        "StatusCallback": f"{PUBLIC}/webhooks/twilio/status",
    }
    # And the API answers 201 with the stored message
    assert outcome.status_code == 201
    body = outcome.body
    assert body["channel"] == "whatsapp" and body["direction"] == "outbound"
    assert (body["provider"], body["provider_message_id"], body["status"]) == ("twilio", record["id"], "queued")
    assert (body["sender_address"], body["recipient_address"]) == (
        f"whatsapp:{WRITTEN_TO}",
        f"whatsapp:{CUSTOMER_PHONE}",
    )
    assert body["agent_id"] == AGENT
    assert body["created_at"].endswith("Z")
    # And the thread holds it, findable by the provider's id (as status callbacks look it up)
    from chalicelib.store import thread

    [stored] = outbound_messages(conversation_id)
    assert stored.id == body["id"] and stored.provider_message_id == record["id"]
    assert thread.find_provider_message("twilio", record["id"]).message_id == body["id"]
    assert outbound_count(conversation_id) == 1
    # And the CRM hears message.created with customer, conversation, message and agent
    [event] = crm_events(hub_with_providers, "message.created")
    assert event["data"]["message"] == body
    assert event["data"]["agent"]["id"] == AGENT
    assert event["data"]["customer"]["phone"] == CUSTOMER_PHONE
    assert event["data"]["conversation"]["counts"]["outbound"] == 1


def test_a_reply_comes_from_the_business_number_the_customer_wrote_to(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    """The defect: a customer who texted the business's number X got the answer from the
    configured default sender. Answers come from X; the configured sender only when there is none."""
    from chalicelib.services.ingest import ingest

    second_number = "+14155550199"
    texted = sms("SMx-1", CUSTOMER_PHONE, "hi, it's Ada")
    conversation_id = ingest(texted.model_copy(update={"recipient_address": second_number})).conversation_id

    assert reply(conversation_id, body="Hello Ada").status_code == 201
    assert reply(conversation_id, body="On WhatsApp too", channel="whatsapp").status_code == 422  # never wrote there

    [record] = sandbox.records()
    assert (record["request"]["To"], record["request"]["From"]) == (CUSTOMER_PHONE, second_number)


def test_a_customer_who_never_wrote_to_a_number_gets_the_configured_sender(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    result = ingest(email("<m1@mail.example.com>", "Order 42", []))
    customers.patch_customer(result.customer_id, CustomerPatch(phone=CUSTOMER_PHONE))
    conversation_id = result.conversation_id

    assert reply(conversation_id, body="Texting you", channel="sms").status_code == 201
    [record] = sandbox.records()
    assert (record["request"]["To"], record["request"]["From"]) == (CUSTOMER_PHONE, SMS_FROM)


def test_an_explicit_channel_overrides_the_last_one(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    conversation_id = whatsapp_then_sms_customer()

    outcome = reply(conversation_id, body="By SMS", channel="sms", media_urls=["https://cdn.example.com/label.png"])

    assert outcome.status_code == 201, outcome.body
    [record] = sandbox.records()
    assert record["request"]["To"] == CUSTOMER_PHONE
    assert record["request"]["From"] == WRITTEN_TO
    assert record["request"]["MediaUrl"] == ["https://cdn.example.com/label.png"]
    assert outcome.body["channel"] == "sms"
    assert outcome.body["media"][0]["url"] == "https://cdn.example.com/label.png"


def test_a_messaging_service_sends_when_configured(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "ab" * 16)
    conversation_id = whatsapp_then_sms_customer()

    outcome = reply(conversation_id, body="Via the service", channel="sms")

    assert (outcome.status_code, outcome.body["status"]) == (201, "accepted")
    request = sandbox.records()[0]["request"]
    # The service sends, from the number of its pool the customer wrote to
    assert request["MessagingServiceSid"] == "MG" + "ab" * 16 and request["From"] == WRITTEN_TO


# --- Refusals: nothing is sent ----------------------------------------------------------------------


def test_whatsapp_window_closed_is_a_422_and_nothing_is_sent(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.http.replies import send_reply

    conversation_id = whatsapp_then_sms_customer()

    later = utcnow() + timedelta(hours=25)
    outcome = send_reply(conversation_id, {"agent_id": AGENT, "body": "Still there?"}, now=later)

    assert outcome.status_code == 422
    assert outcome.body["error"]["code"] == "whatsapp_window_closed"
    assert "template" in outcome.body["error"]["message"]
    assert sandbox.records() == []
    assert outbound_count(conversation_id) == 0
    # SMS has no window: the same reply by SMS goes out
    assert send_reply(conversation_id, {"agent_id": AGENT, "body": "x", "channel": "sms"}, now=later).status_code == 201


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"body": "hi", "channel": "email"}, 422, "no_address_for_channel"),
        ({"body": "hi", "channel": "telegram"}, 422, "unsupported_channel"),
        ({"body": "   "}, 400, "invalid_request"),
        ({"media_urls": []}, 400, "invalid_request"),
        ({"body": "hi", "cc": "x"}, 400, "invalid_request"),
        ({"body": "x" * 1601}, 422, "body_too_long"),
        ({"body": "hi", "subject": "Hello"}, 422, "subject_not_supported"),
        ({"body": "hi", "agent_id": "nobody"}, 404, "not_found"),
    ],
    ids=["no-email", "telegram", "blank-body", "no-body-no-media", "extra-field", "too-long", "subject-sms", "agent"],
)
def test_refusals_send_nothing(
    hub_with_providers: Hub, sandbox: ProviderSandbox, fields: dict[str, Any], status: int, code: str
) -> None:
    conversation_id = whatsapp_then_sms_customer()

    outcome = reply(conversation_id, **fields)

    assert (outcome.status_code, outcome.body["error"]["code"]) == (status, code), outcome.body
    assert sandbox.records() == []
    assert outbound_count(conversation_id) == 0


def test_an_unknown_conversation_is_a_404(hub_with_providers: Hub) -> None:
    outcome = reply("conv_nope", body="hi")
    assert (outcome.status_code, outcome.body["error"]["code"]) == (404, "not_found")


# --- Idempotency-Key ----------------------------------------------------------------------------------


def test_a_repeated_key_sends_once_and_answers_the_same(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    conversation_id = whatsapp_then_sms_customer()

    first = reply(conversation_id, "key-1", body="Once only")
    second = reply(conversation_id, "key-1", body="Once only")

    assert first.status_code == second.status_code == 201
    assert second.body == first.body
    assert second.replayed and not first.replayed
    assert len(sandbox.records()) == 1
    assert outbound_count(conversation_id) == 1
    assert len(crm_events(hub_with_providers, "message.created")) == 1  # (inbound events come from routing)


def test_the_same_key_with_another_body_is_a_422(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    conversation_id = whatsapp_then_sms_customer()
    reply(conversation_id, "key-2", body="First")

    other = reply(conversation_id, "key-2", body="Second")

    assert (other.status_code, other.body["error"]["code"]) == (422, "idempotency_key_reused")
    assert len(sandbox.records()) == 1


def test_a_refusal_is_replayed_too_and_a_bad_key_is_a_400(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    conversation_id = whatsapp_then_sms_customer()

    first = reply(conversation_id, "key-3", body="hi", channel="email")
    again = reply(conversation_id, "key-3", body="hi", channel="email")
    bad = reply(conversation_id, "has spaces", body="hi")

    assert (first.status_code, again.status_code) == (422, 422)
    assert again.body == first.body and again.replayed
    assert bad.status_code == 400
    assert sandbox.records() == []


def test_concurrent_requests_with_one_key_send_once(
    hub_with_providers: Hub, sandbox: ProviderSandbox, tap: ProviderTap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Twilio's answer held back, so the first request is still in progress
    point_providers_at(monkeypatch, tap.url)
    tap.gate.clear()
    conversation_id = whatsapp_then_sms_customer()
    outcomes: list[Any] = []

    def attempt() -> None:
        outcomes.append(reply(conversation_id, "key-race", body="Racing"))

    # When five requests with the same key arrive together
    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for thread in threads:
        thread.start()
    wait_for(lambda: tap.held == 1 and len(outcomes) == 4)
    tap.gate.set()
    for thread in threads:
        thread.join(timeout=15)

    # Then exactly one reached the provider and the others were told it is in progress
    statuses = sorted(outcome.status_code for outcome in outcomes)
    assert statuses == [201, 409, 409, 409, 409]
    busy = next(outcome for outcome in outcomes if outcome.status_code == 409)
    assert busy.body["error"] == {
        "code": "idempotency_key_in_progress",
        "message": "a request with this Idempotency-Key is in progress",
    }
    assert len(tap.requests) == 1 and len(sandbox.records()) == 1
    assert outbound_count(conversation_id) == 1
    # And once it finished, a repeat gets its answer
    assert reply(conversation_id, "key-race", body="Racing").status_code == 201
    assert len(tap.requests) == 1


def test_idempotency_records_older_than_24_hours_count_as_absent(hub_with_providers: Hub) -> None:
    from chalicelib.store import idempotency

    now = utcnow()
    assert idempotency.claim("key-old", "fingerprint-a", "token-a", now) is None
    held = idempotency.claim("key-old", "fingerprint-b", "token-b", now + timedelta(hours=23))
    assert held is not None and held.fingerprint == "fingerprint-a" and held.state == "in_progress"

    later = now + timedelta(hours=24, seconds=1)
    assert idempotency.get("key-old", later) is None
    assert idempotency.claim("key-old", "fingerprint-b", "token-b", later) is None
    item = hub_with_providers.client("dynamodb").get_item(
        TableName=hub_with_providers.table_name, Key={"pk": {"S": "IDEMP#key-old"}, "sk": {"S": "IDEMP"}}
    )["Item"]
    assert item["fingerprint"]["S"] == "fingerprint-b"
    assert int(item["expires_at"]["N"]) == int((later + timedelta(hours=24)).timestamp())


# --- Provider failures ------------------------------------------------------------------------------


def test_a_twilio_refusal_is_stored_failed_and_answered_502(
    hub_with_providers: Hub, sandbox: ProviderSandbox, tap: ProviderTap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sender Twilio refuses (error 21212, invalid From): the address the customer wrote to
    from chalicelib.services.ingest import ingest

    point_providers_at(monkeypatch, tap.url)
    texted = sms("SMbad-1", CUSTOMER_PHONE, "hi").model_copy(update={"recipient_address": "not a sender!"})
    conversation_id = ingest(texted).conversation_id
    crm_events(hub_with_providers)

    outcome = reply(conversation_id, "key-refused", body="Hello", channel="sms")

    # Then the API answers 502 naming Twilio's code and the stored message
    [stored] = outbound_messages(conversation_id)
    assert outcome.status_code == 502
    assert outcome.body["error"]["code"] == "provider_error"
    assert "21212" in outcome.body["error"]["message"] and stored.id in outcome.body["error"]["message"]
    # And the message is in the thread as failed, with Twilio's error
    assert (stored.status, stored.error_code, stored.provider_message_id) == ("failed", "21212", None)
    assert stored.error_message and stored.body == "Hello"
    assert outbound_count(conversation_id) == 1
    [event] = crm_events(hub_with_providers, "message.created")
    assert event["data"]["message"]["status"] == "failed" and event["data"]["message"]["id"] == stored.id
    # And a repeat answers the same without calling Twilio again
    again = reply(conversation_id, "key-refused", body="Hello", channel="sms")
    assert (again.status_code, again.body) == (502, outcome.body)
    assert len(tap.requests) == 1 and sandbox.records() == []


def test_a_sendgrid_refusal_is_stored_failed_with_the_http_status(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key")
    conversation_id = emailing_customer()

    outcome = reply(conversation_id, body="Hello")

    [stored] = outbound_messages(conversation_id)
    assert outcome.status_code == 502 and "401" in outcome.body["error"]["message"]
    assert (stored.status, stored.error_code, stored.channel) == ("failed", "401", "email")
    assert sandbox.records() == []


def test_provider_down_is_a_503_storing_nothing_and_the_key_can_be_retried(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the provider cannot be reached
    down = make_sandbox()
    closed_url = down.url
    down.stop()
    point_providers_at(monkeypatch, closed_url)
    conversation_id = whatsapp_then_sms_customer()
    crm_events(hub_with_providers)

    outcome = reply(conversation_id, "key-down", body="Are you there?")

    # Then 503, nothing stored, nothing announced
    assert outcome.status_code == 503
    assert outcome.body["error"]["code"] == "temporarily_unavailable"
    assert outcome.headers["Retry-After"]
    assert outbound_messages(conversation_id) == [] and outbound_count(conversation_id) == 0
    assert crm_events(hub_with_providers) == []
    # And the same key runs again once the provider is back
    point_providers_at(monkeypatch, sandbox.url)
    retried = reply(conversation_id, "key-down", body="Are you there?")
    assert retried.status_code == 201 and not retried.replayed
    assert len(sandbox.records()) == 1 and outbound_count(conversation_id) == 1


def test_a_reply_sent_but_not_announced_is_finished_by_the_retry_without_sending_again(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.config import settings

    conversation_id = whatsapp_then_sms_customer()
    crm_events(hub_with_providers)
    # Given the CRM event queue is unreachable when the reply is recorded
    monkeypatch.setenv("CRM_EVENTS_QUEUE_URL", "")
    settings.cache_clear()

    first = reply(conversation_id, "key-finish", body="Sent once")

    assert first.status_code == 503 and "same Idempotency-Key" in first.body["error"]["message"]
    assert len(sandbox.records()) == 1
    # When it is back and the client retries with the same key
    monkeypatch.setenv("CRM_EVENTS_QUEUE_URL", hub_with_providers.resources["CRM_EVENTS_QUEUE_URL"])
    settings.cache_clear()
    retried = reply(conversation_id, "key-finish", body="Sent once")

    # Then the work is finished without a second send
    assert retried.status_code == 201
    assert len(sandbox.records()) == 1
    [stored] = outbound_messages(conversation_id)
    assert retried.body["id"] == stored.id and retried.body["provider_message_id"] == sandbox.records()[0]["id"]
    assert outbound_count(conversation_id) == 1
    [event] = crm_events(hub_with_providers, "message.created")
    assert event["data"]["message"]["id"] == stored.id
    assert reply(conversation_id, "key-finish", body="Sent once").body == retried.body


# --- Email threading --------------------------------------------------------------------------------


def email(message_id: str, subject: str, references: list[str], body: str = "Hello") -> InboundMessage:
    return InboundMessage(
        provider="sendgrid",
        provider_message_id=message_id.strip("<>"),
        channel=Channel.EMAIL,
        sender=email_identity("ada@example.com"),
        sender_address="ada@example.com",
        recipient_address=HUB_EMAIL,
        body=body,
        subject=subject,
        profile_name="Ada Lovelace",
        email=EmailThreading(
            message_id=message_id, in_reply_to=references[-1] if references else None, references=references
        ),
    )


def emailing_customer() -> str:
    """A customer who emailed twice; the second email replies to the first."""
    from chalicelib.services.ingest import ingest

    ingest(email("<m1@mail.example.com>", "Order 42", [], "Where is my order?"))
    return ingest(
        email("<m2@mail.example.com>", "Re: Order 42", ["<m1@mail.example.com>"], "Any news?")
    ).conversation_id


def test_an_email_reply_threads_under_the_customers_latest_email(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    conversation_id = emailing_customer()

    outcome = reply(conversation_id, body="It ships today.")

    assert outcome.status_code == 201, outcome.body
    [record] = sandbox.records()
    mail = record["request"]
    assert record["provider"] == "sendgrid"
    assert mail["personalizations"] == [{"to": [{"email": "ada@example.com", "name": "Ada Lovelace"}]}]
    assert mail["from"] == {"email": HUB_EMAIL, "name": "Acme Support"}
    assert mail["subject"] == "Re: Order 42"
    headers = dict(mail["headers"])
    unsubscribe = headers.pop("List-Unsubscribe")
    assert headers == {
        "In-Reply-To": "<m2@mail.example.com>",
        "References": "<m1@mail.example.com> <m2@mail.example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    one_click = unsubscribe.split(",")[0].strip().strip("<>")
    assert one_click.startswith(f"{PUBLIC}/unsubscribe/email/")
    [content] = mail["content"]
    assert content["type"] == "text/plain" and content["value"].startswith("It ships today.")
    assert one_click in content["value"], "the footer carries the same one-click link"
    from chalicelib.http.unsubscribe import unsubscribe_page
    from chalicelib.services import customers

    page = unsubscribe_page(one_click.rsplit("/", 1)[1], "POST")
    assert page.status_code == 200
    assert "email" in customers.get_customer(outcome.body["customer_id"]).opted_out
    assert mail["custom_args"] == {"hub_message_id": outcome.body["id"]}
    body = outcome.body
    assert (body["channel"], body["status"], body["provider"]) == ("email", "accepted", "sendgrid")
    assert body["provider_message_id"] == record["id"]
    assert (body["sender_address"], body["recipient_address"], body["subject"]) == (
        HUB_EMAIL,
        "ada@example.com",
        "Re: Order 42",
    )
    assert body["email"] == {
        "message_id": None,
        "in_reply_to": "<m2@mail.example.com>",
        "references": ["<m1@mail.example.com>", "<m2@mail.example.com>"],
    }
    [stored] = outbound_messages(conversation_id)
    assert stored.provider_message_id == record["id"] and stored.email.in_reply_to == "<m2@mail.example.com>"


def test_an_email_subject_can_be_given_and_media_become_links(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    conversation_id = emailing_customer()

    outcome = reply(
        conversation_id, body="Your invoice:", subject="Invoice for order 42", media_urls=["https://e.com/i.pdf"]
    )

    assert outcome.status_code == 201
    mail = sandbox.records()[0]["request"]
    assert mail["subject"] == "Invoice for order 42"
    assert mail["content"][0]["value"].startswith("Your invoice:\n\nhttps://e.com/i.pdf")
    assert mail["headers"]["In-Reply-To"] == "<m2@mail.example.com>"


def test_email_to_a_customer_who_never_emailed_needs_a_subject(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers

    conversation_id = whatsapp_then_sms_customer()
    customer_id = customers.get_conversation(conversation_id).customer_id
    customers.patch_customer(customer_id, CustomerPatch(email="ada@example.com"))

    refused = reply(conversation_id, body="Hi", channel="email")
    sent = reply(conversation_id, body="Hi", channel="email", subject="About your order")

    assert (refused.status_code, refused.body["error"]["code"]) == (422, "subject_required")
    assert sent.status_code == 201
    [record] = sandbox.records()
    assert record["request"]["subject"] == "About your order"
    headers = record["request"]["headers"]
    assert "In-Reply-To" not in headers and "References" not in headers, "nothing to thread under"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- Status callbacks -------------------------------------------------------------------------------


@pytest.fixture
def callbacks_hub(hub_with_providers: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hub, ProviderSandbox]]:
    """The app served in this process as PUBLIC_BASE_URL, and a sandbox that reports delivery to it."""
    from app import app
    from chalicelib.config import settings
    from local.http_server import HttpServer

    server = HttpServer(app, "127.0.0.1", 0).start()
    monkeypatch.setenv("PUBLIC_BASE_URL", f"http://127.0.0.1:{server.port}")
    settings.cache_clear()
    reporting = make_sandbox(callbacks=True)
    point_providers_at(monkeypatch, reporting.url)
    yield hub_with_providers, reporting
    reporting.stop()
    server.stop()


def test_status_callbacks_update_the_reply_and_tell_the_crm(callbacks_hub: tuple[Hub, ProviderSandbox]) -> None:
    hub, reporting = callbacks_hub
    from chalicelib.services.ingest import ingest

    conversation_id = whatsapp_then_sms_customer()
    failing = ingest(sms("SMin-9", "+15550000000", "unreachable soon")).conversation_id
    crm_events(hub)

    delivered = reply(conversation_id, body="On its way", channel="sms")
    undelivered = reply(failing, body="You will not get this")

    assert delivered.status_code == undelivered.status_code == 201
    wait_for(lambda: [m.status for m in outbound_messages(conversation_id)] == ["delivered"])
    wait_for(lambda: [m.status for m in outbound_messages(failing)] == ["undelivered"])
    [failed] = outbound_messages(failing)
    assert failed.error_code == "30003", failed.model_dump()
    # The hub applies a status before the sandbox has finished recording the answer it got.
    wait_for(lambda: len([c for record in reporting.records() for c in record["callbacks"]]) == 4)
    callbacks = [c for record in reporting.records() for c in record["callbacks"]]
    assert len(callbacks) == 4 and all(c["http_status"] == 200 for c in callbacks)
    events = crm_events(hub, "message.status_updated")
    seen = {(e["data"]["message"]["id"], e["data"]["status"]) for e in events}
    assert seen == {
        (delivered.body["id"], "sent"),
        (delivered.body["id"], "delivered"),
        (undelivered.body["id"], "sent"),
        (undelivered.body["id"], "undelivered"),
    }
    [bad_news] = [e for e in events if e["data"]["status"] == "undelivered"]
    assert bad_news["data"]["error_code"] == "30003"
    assert "error_code" not in next(e for e in events if e["data"]["status"] == "delivered")["data"]


def test_an_agent_reply_never_goes_to_a_channel_the_customer_opted_out_of(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    """The defect: after a customer texted STOP, an agent reply on SMS still went out."""
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    result = ingest(sms("SMstop-1", CUSTOMER_PHONE, "STOP"))
    conversation = customers.get_conversation(result.conversation_id)
    message = customers.list_messages(conversation.id, 10, None)[0][0]
    from chalicelib.services.consent import handle_keyword

    assert handle_keyword(customers.get_customer(result.customer_id), conversation, message)
    confirmations = len(sandbox.records())  # the STOP confirmation itself

    outcome = reply(conversation.id, "after-stop", body="Are you still there?", channel="sms")

    assert outcome.status_code == 422 and outcome.body["error"]["code"] == "opted_out"
    assert "opted out of sms" in outcome.body["error"]["message"]
    assert len(sandbox.records()) == confirmations, "nothing more went to Twilio"
    assert "Are you still there?" not in [m.body for m in outbound_messages(conversation.id)]
