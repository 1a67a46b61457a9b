"""Consent keywords, email unsubscribe and proactive notifications against the AWS emulator, with
the real twilio and sendgrid clients talking to the provider sandbox over HTTP.

Clocks are fixed (`now=`) wherever a decision depends on time (WhatsApp's window, quiet hours).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, StatusUpdate
from chalicelib.domain.notifications import NotificationDue
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_ingest import sms

ACCOUNT_SID = "AC" + "c0" * 16
TWILIO_TOKEN = "test-twilio-token"  # the hub fixture's TWILIO_AUTH_TOKEN
SENDGRID_KEY = "SG.consent-test-key"
SMS_FROM = "+14155238886"  # also the number the test customers write to (tests.integration.test_ingest.sms)
WHATSAPP_FROM = "+14155238887"
HUB_EMAIL = "support@hub.example.com"
PHONE = "+15017122661"
CONTENT_SID = "HX" + "b1" * 16
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)  # a Wednesday, 15:00 in Istanbul


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProviderSandbox]:
    running = ProviderSandbox(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=TWILIO_TOKEN,
        sendgrid_api_key=SENDGRID_KEY,
        simulate_status_callbacks=False,
    ).start()
    yield running
    running.stop()


@pytest.fixture
def hub_ready(hub: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub sending through the sandbox, with consent and notification settings."""
    sandbox.clear()
    settings = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "SENDGRID_API_KEY": SENDGRID_KEY,
        "SENDGRID_FROM_EMAIL": HUB_EMAIL,
        "SENDGRID_FROM_NAME": "Acme Support",
        "TWILIO_API_BASE_URL": sandbox.url,
        "SENDGRID_API_BASE_URL": sandbox.url,
        "PROVIDER_TIMEOUT_SECONDS": "5",
        "BUSINESS_NAME": "Acme",
        "UNSUBSCRIBE_SECRET": "test-unsubscribe-secret",
        "TWILIO_WHATSAPP_TEMPLATES": json.dumps({"order_ready": CONTENT_SID}),
        "NOTIFICATION_TEMPLATES": json.dumps({"order_ready": "Hi {name}, order {order} is ready for pickup."}),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("TWILIO_MESSAGING_SERVICE_SID", "CONSENT_SEND_CONFIRMATIONS", "UNSUBSCRIBE_MAILTO"):
        monkeypatch.delenv(name, raising=False)
    return hub


# --- Helpers ----------------------------------------------------------------------------------------


def write_in(
    sid: str, sender: str, body: str, at: datetime | None = None, to: str | None = None
) -> tuple[Any, Any, Any]:
    """A customer's message (to the business number `to`, by default test_ingest.sms's), stored as
    ingest stores it: (customer, conversation, message)."""
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest
    from chalicelib.store import thread

    extra = {"received_at": at} if at else {}
    message = sms(sid, sender, body, **extra)
    result = ingest(message if to is None else message.model_copy(update={"recipient_address": to}))
    message = thread.get_message(result.conversation_id, result.message_id)
    return customers.get_customer(result.customer_id), customers.get_conversation(result.conversation_id), message


def keyword(sid: str, sender: str, body: str) -> bool:
    from chalicelib.services.consent import handle_keyword

    customer, conversation, message = write_in(sid, sender, body)
    return handle_keyword(customer, conversation, message, now=T0)


def customer_of(phone: str = PHONE) -> Any:
    from chalicelib.services.customers import find_customer

    return find_customer(phone=phone)


def outbound(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    messages, _ = customers.list_messages(conversation_id, 200, None)
    return [message for message in messages if message.direction == "outbound"]


def crm_events(hub: Hub, event_type: str | None = None) -> list[dict[str, Any]]:
    sqs = hub.client("sqs")
    url = hub.resources["CRM_EVENTS_QUEUE_URL"]
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            found.append(json.loads(message["Body"])["event"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [event for event in found if event_type is None or event["type"] == event_type]


def timers_queued(hub: Hub) -> list[dict[str, Any]]:
    sqs = hub.client("sqs")
    url = hub.resources["TIMER_QUEUE_URL"]
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def notify(now: datetime = T0, key: str | None = None, **body: Any) -> Any:
    from chalicelib.http.notifications import create_notification

    return create_notification({"customer": {"phone": PHONE}, **body}, key, now=now)


def set_profile(customer_id: str, **fields: Any) -> None:
    """What PATCH /v1/customers/{id} will set (preferred_channel, timezone, quiet_hours)."""
    from chalicelib.store import keys, table

    names = {f"#{name}": name for name in fields}
    values = {f":{name}": value for name, value in fields.items()}
    table.update(
        keys.customer_key(customer_id),
        "SET " + ", ".join(f"#{name} = :{name}" for name in fields),
        names,
        values,
    )


def twilio_requests(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [record["request"] for record in sandbox.records() if record["provider"] == "twilio"]


def emails(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [record["request"] for record in sandbox.records() if record["provider"] == "sendgrid"]


# --- Consent keywords ---------------------------------------------------------------------------------


def test_stop_start_and_help_by_sms(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    # Given a customer who texts STOP
    assert keyword("SMstop", PHONE, "Stop.") is True

    # Then they are opted out of SMS at the time of that message
    customer = customer_of()
    [stop] = [m for m in _thread(customer.conversation_id) if m.body == "Stop."]
    assert set(customer.opted_out) == {"sms"}
    assert customer.opted_out["sms"] == stop.created_at
    # And Twilio got the confirmation, from the number they wrote to, naming the business
    [confirmation] = twilio_requests(sandbox)
    assert confirmation["To"] == PHONE and confirmation["From"] == SMS_FROM
    assert confirmation["Body"].startswith("Acme: you are unsubscribed") and "START" in confirmation["Body"]
    assert confirmation["StatusCallback"] == "https://hub.example.com/webhooks/twilio/status"
    # And the thread holds it as an outbound message with Twilio's id
    [stored] = outbound(customer.conversation_id)
    assert (stored.body, stored.channel, stored.provider_message_id) == (
        confirmation["Body"],
        "sms",
        sandbox.records()[0]["id"],
    )
    # And the CRM hears customer.updated and message.created for the confirmation
    events = crm_events(hub_ready)
    assert [e["type"] for e in events] == ["customer.updated", "message.created"]
    assert events[1]["data"]["message"]["id"] == stored.id

    # When they text HELP, they get the help text and nothing changes
    assert keyword("SMhelp", PHONE, "help") is True
    assert "Acme: reply here with your question" in twilio_requests(sandbox)[-1]["Body"]
    assert set(customer_of().opted_out) == {"sms"}

    # When they text START, they are opted back in
    assert keyword("SMstart", PHONE, "START") is True
    assert customer_of().opted_out == {}
    assert twilio_requests(sandbox)[-1]["Body"].startswith("Acme: you are subscribed again")
    assert len(outbound(customer.conversation_id)) == 3
    # And an ordinary message is not a keyword (it goes to routing)
    assert keyword("SMq", PHONE, "Stop sending me the wrong size!") is False
    assert len(sandbox.records()) == 3


def _thread(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    return customers.list_messages(conversation_id, 200, None)[0]


def test_whatsapp_stop_is_per_channel_and_a_redelivery_confirms_once(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.consent import handle_keyword

    customer, conversation, message = write_in("SMwa-stop", f"whatsapp:{PHONE}", "UNSUBSCRIBE")

    assert handle_keyword(customer, conversation, message, now=T0) is True
    # The routing worker may see the same message again: same state, no second confirmation
    assert handle_keyword(customer, conversation, message, now=T0) is True

    after = customer_of()
    assert set(after.opted_out) == {"whatsapp"}  # SMS consent untouched
    [confirmation] = twilio_requests(sandbox)
    assert confirmation["To"] == f"whatsapp:{PHONE}" and confirmation["From"] == f"whatsapp:{SMS_FROM}"
    assert len(outbound(conversation.id)) == 1
    # (the repeat re-announces the same customer.updated: same event id, the CRM sees it once)
    ids = {e["id"] for e in crm_events(hub_ready, "customer.updated")}
    assert len(ids) == 1
    # "Yes" opts back in only because the customer is opted out of WhatsApp
    assert keyword("SMwa-yes", f"whatsapp:{PHONE}", "yes") is True
    assert customer_of().opted_out == {}
    assert keyword("SMsms-yes", PHONE, "Yes") is False


def test_confirmations_can_be_left_to_twilio(
    hub_ready: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With Twilio's own (Advanced) Opt-Out answering STOP, the hub only records the state
    monkeypatch.setenv("CONSENT_SEND_CONFIRMATIONS", "false")

    assert keyword("SMquiet", PHONE, "stopall") is True

    assert set(customer_of().opted_out) == {"sms"}
    assert sandbox.records() == []
    assert outbound(customer_of().conversation_id) == []


def test_a_refused_confirmation_is_stored_failed(
    hub_ready: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twilio refuses (here: an invalid sender; in production 21610 once its filter blocked the number)
    from chalicelib.services.consent import handle_keyword

    customer, conversation, message = write_in("SMrefused", PHONE, "quit", to="not a sender!")

    assert handle_keyword(customer, conversation, message, now=T0) is True

    assert set(customer_of().opted_out) == {"sms"}
    [failed] = outbound(conversation.id)
    assert (failed.status, failed.error_code) == ("failed", "21212")


def test_the_routing_hook_keeps_keywords_away_from_agents(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    import inspect

    from chalicelib.domain.routing_task import RoutingTask
    from chalicelib.services import routing

    if "handle_keyword" not in inspect.getsource(routing.handle_inbound):
        pytest.skip("services/routing.py handle_inbound does not call consent.handle_keyword yet")
    write_in("SMhook", PHONE, "STOP")
    [queued] = hub_ready.routing_messages()
    routing.handle_inbound(RoutingTask.model_validate_json(queued["Body"]))

    types = [e["type"] for e in crm_events(hub_ready)]
    assert "conversation.queued" not in types
    assert types.count("message.created") == 2 and "customer.updated" in types
    assert set(customer_of().opted_out) == {"sms"}


# --- Notifications: channel choice and consent -----------------------------------------------------------


def test_a_notification_to_a_customer_opted_out_everywhere_is_a_422(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.http.unsubscribe import unsubscribe_page
    from chalicelib.services.email_unsubscribe import unsubscribe_link

    # Given a customer who stopped SMS and WhatsApp, and unsubscribed from email
    keyword("SMo1", PHONE, "STOP")
    keyword("SMo2", f"whatsapp:{PHONE}", "STOP")
    customer = customer_of()
    set_profile(customer.id, email="ada@example.com")
    token = unsubscribe_link(customer.id).rsplit("/", 1)[-1]
    assert unsubscribe_page(token, "POST", now=T0).status_code == 200
    sandbox.clear()

    outcome = notify(text="Your order shipped", channels=["whatsapp", "sms", "email"])

    assert outcome.status_code == 422
    error = outcome.body["error"]
    assert error["code"] == "no_eligible_channel"
    assert {name: why["code"] for name, why in error["channels"].items()} == {
        "whatsapp": "opted_out",
        "sms": "opted_out",
        "email": "opted_out",
    }
    assert "unsubscribed from email" in error["channels"]["email"]["reason"] and "nothing was sent" in error["message"]
    assert sandbox.records() == []


def test_whatsapp_outside_its_window_falls_back_to_sms(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.notifications import get_notification

    _, conversation, _ = write_in("SMwa-old", f"whatsapp:{PHONE}", "thanks", at=T0)
    crm_events(hub_ready)

    outcome = notify(now=T0 + timedelta(hours=25), text="Your order shipped", channels=["whatsapp", "sms"])

    assert outcome.status_code == 202, outcome.body
    body = outcome.body
    assert (body["status"], body["channel"]) == ("sent", "sms") and body["id"].startswith("ntf_")
    assert [(a["channel"], a["status"], a.get("code")) for a in body["attempts"]] == [
        ("whatsapp", "skipped", "whatsapp_window_closed"),
        ("sms", "sent", None),
    ]
    [request] = twilio_requests(sandbox)
    assert (request["To"], request["From"], request["Body"]) == (PHONE, SMS_FROM, "Your order shipped")
    [message] = outbound(conversation.id)
    assert (
        message.id == body["message_id"] and message.provider_message_id == body["attempts"][1]["provider_message_id"]
    )
    [event] = crm_events(hub_ready, "message.created")
    assert event["data"]["message"]["notification_id"] == body["id"]
    assert event["data"]["notification"]["status"] == "sent"
    assert get_notification(body["id"]) == body
    # Inside the window the same notification goes by WhatsApp
    inside = notify(now=T0 + timedelta(hours=23), text="Another update", channels=["whatsapp", "sms"])
    assert inside.body["channel"] == "whatsapp" and twilio_requests(sandbox)[-1]["To"] == f"whatsapp:{PHONE}"


def test_a_failed_delivery_falls_back_to_the_next_channel(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.delivery_status import record_status
    from chalicelib.services.notifications import get_notification, on_status
    from chalicelib.store import notifications as notification_store

    customer, conversation, _ = write_in("SMfirst", PHONE, "hello", at=T0)
    set_profile(customer.id, email="ada@example.com")
    sent = notify(text="Your order shipped", channels=["sms", "email"]).body
    [sms_record] = sandbox.records()
    # The message item carries the notification id (status callbacks find the notification from it)
    item = hub_ready.client("dynamodb").get_item(
        TableName=hub_ready.table_name,
        Key={"pk": {"S": f"CONV#{conversation.id}"}, "sk": {"S": "MSG#" + sent["message_id"].removeprefix("msg_")}},
    )["Item"]
    assert item["notification_id"]["S"] == sent["id"]
    assert notification_store.notification_for_message(sent["message_id"]) == sent["id"]

    # When Twilio reports the SMS undelivered, and the timer worker handles the failure it queued
    update = StatusUpdate(
        provider="twilio", provider_message_id=sms_record["id"], status=DeliveryStatus.UNDELIVERED, error_code="30003"
    )
    crm_events(hub_ready)
    timers_queued(hub_ready)
    record_status(update)
    assert hub_ready.run_timers() == 1

    # Then the notification went out by email
    view = get_notification(sent["id"])
    assert (view["status"], view["channel"]) == ("sent", "email")
    [mail] = emails(sandbox)
    assert mail["personalizations"][0]["to"][0]["email"] == "ada@example.com"
    assert mail["subject"] == "A message from Acme"
    assert mail["content"][0]["value"].startswith("Your order shipped\n\n--\n")
    assert [(a["channel"], a["status"], a.get("error_code")) for a in view["attempts"]] == [
        ("sms", "undelivered", "30003"),
        ("email", "sent", None),
    ]
    assert [m.channel for m in outbound(conversation.id)] == ["sms", "email"]
    [event] = crm_events(hub_ready, "message.created")
    assert event["data"]["message"]["channel"] == "email"
    # A repeated (or late) callback changes nothing and sends nothing
    assert on_status(sent["message_id"], "failed", now=T0 + timedelta(minutes=2)) is None
    assert on_status(view["message_id"], "delivered") is None
    assert len(sandbox.records()) == 2
    # The last channel failing too leaves it failed
    last = on_status(view["message_id"], "undelivered", now=T0 + timedelta(minutes=3))
    assert last is not None and last.status == "failed"


def test_a_fallback_with_no_provider_reachable_is_held_for_a_retry(
    hub_ready: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services.notifications import RETRY_SECONDS, on_status, send_due

    customer, _, _ = write_in("SMfirst", PHONE, "hello", at=T0)
    set_profile(customer.id, email="ada@example.com")
    sent = notify(text="Your order shipped", channels=["sms", "email"], now=T0 + timedelta(minutes=1)).body
    down = ProviderSandbox(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TWILIO_TOKEN, sendgrid_api_key="x")
    closed = down.start().url
    down.stop()
    monkeypatch.setenv("SENDGRID_API_BASE_URL", closed)
    timers_queued(hub_ready)

    held = on_status(sent["message_id"], "failed", now=T0 + timedelta(minutes=2))

    # Then nothing is lost: it waits for a retry instead of failing
    assert held is not None and (held.status, held.retries) == ("scheduled", 1)
    [timer] = timers_queued(hub_ready)
    assert timer["message"] == {"type": "notification_due", "notification_id": sent["id"]}
    assert datetime.fromisoformat(timer["due_at"]) == T0 + timedelta(minutes=2, seconds=RETRY_SECONDS)
    assert [(a.channel, a.status) for a in held.attempts] == [("sms", "undelivered")]
    # When SendGrid is back, the timer sends it by email
    monkeypatch.setenv("SENDGRID_API_BASE_URL", sandbox.url)
    done = send_due(sent["id"], now=T0 + timedelta(minutes=3))
    assert done is not None and (done.status, done.channel) == ("sent", "email")
    assert [(a.channel, a.status) for a in done.attempts] == [("sms", "undelivered"), ("email", "sent")]
    assert len(emails(sandbox)) == 1


def test_a_whatsapp_template_goes_out_by_content_sid(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    # Given a customer who last wrote on WhatsApp two days ago (window closed)
    _, conversation, _ = write_in("SMwa", f"whatsapp:{PHONE}", "hi", at=T0 - timedelta(days=2))

    outcome = notify(
        template={"name": "order_ready", "params": {"name": "Ada", "order": 42}}, channels=["whatsapp", "sms"]
    )

    assert outcome.status_code == 202, outcome.body
    assert outcome.body["channel"] == "whatsapp"
    [request] = twilio_requests(sandbox)
    assert request["ContentSid"] == CONTENT_SID
    assert json.loads(request["ContentVariables"]) == {"name": "Ada", "order": "42"}
    # From the number the customer wrote to on WhatsApp (test_ingest.sms writes to SMS_FROM)
    assert (request["To"], request["From"]) == (f"whatsapp:{PHONE}", f"whatsapp:{SMS_FROM}")
    assert "Body" not in request
    [message] = outbound(conversation.id)
    assert message.body == "Hi Ada, order 42 is ready for pickup." and message.channel == "whatsapp"


def test_a_template_without_text_for_sms_is_refused_clearly(
    hub_ready: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFICATION_TEMPLATES", "")
    write_in("SMx", PHONE, "hi", at=T0)

    outcome = notify(template={"name": "order_ready", "params": {"name": "Ada"}}, channels=["sms"])

    assert outcome.status_code == 422
    assert outcome.body["error"]["channels"]["sms"]["code"] == "template_not_available"
    assert "NOTIFICATION_TEMPLATES" in outcome.body["error"]["message"]
    assert sandbox.records() == []


# --- Quiet hours ---------------------------------------------------------------------------------------------


def test_quiet_hours_hold_a_notification_until_they_end(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.notifications import get_notification, handle_timer, send_due

    customer, conversation, _ = write_in("SMq", PHONE, "hi", at=T0)
    set_profile(customer.id, timezone="Europe/Istanbul", quiet_hours={"start": "22:00", "end": "08:00"})
    timers_queued(hub_ready)
    late = datetime(2025, 1, 15, 20, 30, tzinfo=UTC)  # 23:30 in Istanbul
    morning = datetime(2025, 1, 16, 5, 0, tzinfo=UTC)  # 08:00 in Istanbul

    outcome = notify(now=late, text="Your order shipped", channels=["sms"])

    # Then it is scheduled for the end of the quiet hours, and nothing is sent yet
    assert outcome.status_code == 202
    assert (outcome.body["status"], outcome.body["scheduled_for"]) == ("scheduled", "2025-01-16T05:00:00Z")
    assert outcome.body["channel"] is None and sandbox.records() == []
    [timer] = timers_queued(hub_ready)
    assert timer["message"] == {"type": "notification_due", "notification_id": outcome.body["id"]}
    assert datetime.fromisoformat(timer["due_at"]) == morning
    # An urgent one goes at once
    urgent = notify(now=late, text="Your card was used abroad", channels=["sms"], urgent=True)
    assert urgent.body["status"] == "sent" and len(sandbox.records()) == 1

    # When the timer fires at 08:00 it is sent
    sent = send_due(outcome.body["id"], now=morning)
    assert sent is not None and (sent.status, sent.channel) == ("sent", "sms")
    assert twilio_requests(sandbox)[-1]["Body"] == "Your order shipped"
    assert get_notification(outcome.body["id"])["scheduled_for"] == "2025-01-16T05:00:00Z"
    # And a repeat of the timer does nothing
    handle_timer(NotificationDue(notification_id=outcome.body["id"]))
    assert len(sandbox.records()) == 2
    assert len(outbound(conversation.id)) == 2


def test_a_timer_that_fires_early_in_new_quiet_hours_waits_again(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.notifications import send_due

    customer, _, _ = write_in("SMq2", PHONE, "hi", at=T0)
    set_profile(customer.id, timezone="UTC", quiet_hours={"start": "20:00", "end": "09:00"})
    held = notify(now=datetime(2025, 1, 15, 21, 0, tzinfo=UTC), text="Later", channels=["sms"]).body
    timers_queued(hub_ready)
    set_profile(customer.id, quiet_hours={"start": "20:00", "end": "10:00"})  # the customer sleeps in

    again = send_due(held["id"], now=datetime(2025, 1, 16, 9, 0, tzinfo=UTC))

    assert again is not None and again.status == "scheduled"
    assert again.scheduled_for == datetime(2025, 1, 16, 10, 0, tzinfo=UTC)
    assert [t["due_at"] for t in timers_queued(hub_ready)] == ["2025-01-16T10:00:00Z"]
    assert sandbox.records() == []


# --- Email: unsubscribe headers and the one-click round trip -------------------------------------------------


def test_email_carries_one_click_unsubscribe_and_the_link_works(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.http.unsubscribe import unsubscribe_page
    from chalicelib.services.email_unsubscribe import unsubscribe_headers

    customer, _, _ = write_in("SMe", PHONE, "hi", at=T0)
    set_profile(customer.id, email="ada@example.com", name="Ada Lovelace")

    outcome = notify(text="Your invoice is ready", channels=["email"], subject="Invoice 7")

    assert outcome.status_code == 202, outcome.body
    [mail] = emails(sandbox)
    headers = mail["headers"]
    assert headers == unsubscribe_headers(customer.id)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url, mailto = re.fullmatch(r"<([^>]+)>, <([^>]+)>", headers["List-Unsubscribe"]).groups()  # type: ignore[union-attr]
    assert url.startswith("https://hub.example.com/unsubscribe/email/u1.")
    token = url.rsplit("/", 1)[-1]
    assert unquote(mailto) == f"mailto:{HUB_EMAIL}?subject=unsubscribe {token}"
    assert mail["subject"] == "Invoice 7" and mail["personalizations"][0]["to"][0]["name"] == "Ada Lovelace"
    assert mail["content"][0]["value"].endswith(
        f"You receive this email from Acme. To stop these emails, unsubscribe: {url}"
    )

    # GET shows a confirm button and changes nothing (mail scanners follow links)
    page = unsubscribe_page(token, "GET", now=T0)
    assert page.status_code == 200 and '<form method="post"' in page.html and "Acme" in page.html
    assert page.headers["Content-Type"].startswith("text/html")
    assert customer_of().opted_out == {}
    # POST (the button, or the mail client's one-click) unsubscribes from email only
    crm_events(hub_ready)
    done = unsubscribe_page(token, "POST", now=T0 + timedelta(hours=1))
    assert done.status_code == 200 and "unsubscribed" in done.html
    assert customer_of().opted_out == {"email": T0 + timedelta(hours=1)}
    [event] = crm_events(hub_ready, "customer.updated")
    assert event["data"]["customer"]["id"] == customer.id
    # A repeat keeps the first time; a bad token is a 404 page
    unsubscribe_page(token, "POST", now=T0 + timedelta(hours=2))
    assert customer_of().opted_out == {"email": T0 + timedelta(hours=1)}
    assert unsubscribe_page(token[:-3] + "AAA", "POST").status_code == 404
    assert unsubscribe_page("u1.garbage", "GET").status_code == 404
    # And email is no longer used
    assert notify(text="More news", channels=["email"]).status_code == 422


def test_an_email_to_the_mailto_address_unsubscribes(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.domain.identity import email_identity
    from chalicelib.services.consent import handle_keyword
    from chalicelib.services.email_unsubscribe import unsubscribe_link
    from chalicelib.services.ingest import ingest
    from chalicelib.store import thread

    message = InboundMessage(
        provider="sendgrid",
        provider_message_id="m-unsub@mail.example.com",
        channel=Channel.EMAIL,
        sender=email_identity("ada@example.com"),
        sender_address="ada@example.com",
        recipient_address=HUB_EMAIL,
        body="",
        subject="placeholder",
    )
    first = ingest(message.model_copy(update={"provider_message_id": "m-first", "subject": "Hello"}))
    token = unsubscribe_link(first.customer_id).rsplit("/", 1)[-1]
    result = ingest(message.model_copy(update={"subject": f"unsubscribe {token}"}))
    from chalicelib.services import customers

    customer = customers.get_customer(result.customer_id)
    conversation = customers.get_conversation(result.conversation_id)

    assert handle_keyword(customer, conversation, thread.get_message(result.conversation_id, result.message_id))
    assert set(customers.get_customer(result.customer_id).opted_out) == {"email"}
    hello = thread.get_message(first.conversation_id, first.message_id)
    assert handle_keyword(customer, conversation, hello) is False  # an ordinary email
    assert sandbox.records() == []  # no confirmation email


# --- The API's other promises -------------------------------------------------------------------------------


def test_a_new_phone_creates_the_customer_and_a_key_replays(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.http.notifications import create_notification

    body = {"customer": {"phone": "(501) 555-0123"}, "text": "Welcome to Acme", "channels": ["sms"]}

    first = create_notification(body, "ntf-key-1", now=T0)
    again = create_notification(body, "ntf-key-1", now=T0)
    other = create_notification({**body, "text": "Different"}, "ntf-key-1", now=T0)

    assert first.status_code == 202, first.body
    customer = customer_of("+15015550123")
    assert customer is not None and first.body["customer_id"] == customer.id and customer.phone == "+15015550123"
    assert (again.status_code, again.body, again.headers.get("Idempotent-Replayed")) == (202, first.body, "true")
    assert (other.status_code, other.body["error"]["code"]) == (422, "idempotency_key_reused")
    assert len(sandbox.records()) == 1
    types = [e["type"] for e in crm_events(hub_ready)]
    assert types == ["customer.created", "message.created"]
    # Without channels, the order is preferred, last, then SMS, WhatsApp, email
    set_profile(customer.id, preferred_channel="email", email="new@example.com")
    assert create_notification({**body, "channels": None}, now=T0).body["channel"] == "email"


def test_refusals_of_the_request(hub_ready: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.http.notifications import create_notification
    from chalicelib.services.errors import NotFound
    from chalicelib.services.notifications import get_notification

    assert create_notification({"customer": {"id": "cus_nope"}, "text": "x"}).status_code == 404
    assert create_notification({"customer": {"phone": "not a phone"}, "text": "x"}).status_code == 400
    assert create_notification({"customer": {"phone": PHONE}}).status_code == 400
    # a new customer with nothing reachable is not created
    refused = create_notification({"customer": {"email": "nobody@example.com"}, "text": "x", "channels": ["sms"]})
    assert refused.status_code == 422 and customer_of() is None
    with pytest.raises(NotFound):
        get_notification("ntf_nope")
    assert sandbox.records() == []
