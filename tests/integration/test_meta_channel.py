"""Meta end to end: signed webhooks through the real route into the AWS emulator, and agent replies
through chalicelib.channels.meta to the Graph emulator (local/chat_sandbox/meta.py) over HTTP.

Webhook bodies are serialised the way Meta sends them (compact JSON, non-ASCII escaped as
\\uXXXX) and signed over exactly those bytes with the app secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from chalicelib.channels.base import Outgoing
from chalicelib.domain.messages import utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable
from local.chat_sandbox.meta import MetaEmulator
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import AGENT, outbound_messages, wait_for
from tests.integration.test_ingest import sms
from tests.integration.test_links import created_link
from tests.support.twilio_signature import sign_form

EVENTS = Path(__file__).parents[2] / "events" / "meta"
APP_SECRET = "0d6f2b7c9a1e4f3b8c5d7e9f1a2b3c4d"
VERIFY_TOKEN = "meta-verify-token-for-tests"
ACCESS_TOKEN = "EAAGm0PX4ZCpsBAtestaccesstoken"
VERSION = "v21.0"
PHONE_NUMBER_ID = "106540352242922"
BUSINESS_NUMBER = "+15550783881"
PAGE_ID = "107485388405331"
INSTAGRAM_ID = "17841405309211844"
CUSTOMER_PHONE = "+15017122661"
WA_ID = "15017122661"
PSID = "6245087298860497"
IGSID = "1914827532176842"


@pytest.fixture(scope="module")
def meta_api(sandbox: ProviderSandbox) -> MetaEmulator:
    emulator = MetaEmulator(
        access_token=ACCESS_TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        page_id=PAGE_ID,
        instagram_account_id=INSTAGRAM_ID,
        version=VERSION,
    )
    return sandbox.add_emulator(emulator)


def configure_meta(monkeypatch: pytest.MonkeyPatch, graph_url: str) -> None:
    from chalicelib.config import settings

    values = {
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "META_ACCESS_TOKEN": ACCESS_TOKEN,
        "META_GRAPH_BASE_URL": graph_url,
        "META_GRAPH_VERSION": VERSION,
        "META_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "META_WHATSAPP_NUMBER": BUSINESS_NUMBER,
        "META_PAGE_ID": PAGE_ID,
        "META_INSTAGRAM_ACCOUNT_ID": INSTAGRAM_ID,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()


@pytest.fixture
def meta_hub(
    hub_with_providers: Hub, sandbox: ProviderSandbox, meta_api: MetaEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hub]:
    from chalicelib.config import settings

    configure_meta(monkeypatch, sandbox.url_for("meta"))
    yield hub_with_providers
    settings.cache_clear()


@pytest.fixture
def client(meta_hub: Hub) -> Iterator[Client]:
    import app

    with Client(app.app) as test_client:
        yield test_client


# --- Webhooks as Meta sends them -----------------------------------------------------------------------


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signed(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(client: Client, payload: dict[str, Any] | bytes, signature: str | None = None):
    body = payload if isinstance(payload, bytes) else encode(payload)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature or signed(body)}
    return client.http.post("/webhooks/meta", headers=headers, body=body)


def whatsapp_value(**content: Any) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS_NUMBER.lstrip("+"), "phone_number_id": PHONE_NUMBER_ID},
        **content,
    }
    change = {"value": value, "field": "messages"}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}


def whatsapp_text(wamid: str, body: str, wa_id: str = WA_ID, name: str = "Ada Lovelace") -> dict[str, Any]:
    message = {"from": wa_id, "id": wamid, "timestamp": str(int(time.time())), "type": "text", "text": {"body": body}}
    return whatsapp_value(contacts=[{"profile": {"name": name}, "wa_id": wa_id}], messages=[message])


def whatsapp_status(wamid: str, status: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(time.time())), "recipient_id": WA_ID}
    if errors:
        entry["errors"] = errors
    return whatsapp_value(statuses=[entry])


def page_event(obj: str, account: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": account, "time": int(time.time() * 1000), "messaging": list(events)}]}


def messenger_text(mid: str, text: str, psid: str = PSID) -> dict[str, Any]:
    event = {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": text},
    }
    return page_event("page", PAGE_ID, event)


def thread(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    messages, _ = customers.list_messages(conversation_id, 200, None)
    return messages


def meta_records(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [record for record in sandbox.records() if record["provider"] == "meta"]


def reply(conversation_id: str, body: str, **fields: Any):
    from chalicelib.http.replies import send_reply

    now = fields.pop("now", None)
    return send_reply(conversation_id, {"agent_id": AGENT, "body": body, **fields}, None, now=now)


# --- One customer across SMS and WhatsApp ---------------------------------------------------------------------


def test_a_whatsapp_cloud_message_joins_the_customer_who_texted_from_that_number(client: Client) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    by_sms = ingest(sms("SMmeta-1", CUSTOMER_PHONE, "hi by sms"))

    response = deliver(client, whatsapp_text("wamid.HBgLMTUwMTcxMjI2NjEVAgASGBQzQUIxAA==", "Merci, ça marche"))

    assert (response.status_code, response.body) == (200, b"EVENT_RECEIVED")
    customer = customers.find_customer(phone=CUSTOMER_PHONE)
    assert customer.id == by_sms.customer_id
    assert customer.whatsapp_provider == "meta"
    assert customer.provider_names == {"whatsapp": "Ada Lovelace"}
    messages = thread(by_sms.conversation_id)
    assert [(m.channel.value, m.provider, m.body) for m in messages] == [
        ("sms", "twilio", "hi by sms"),
        ("whatsapp", "meta", "Merci, ça marche"),
    ]
    assert messages[1].sender_address == "whatsapp:+15017122661"
    assert messages[1].recipient_address == "whatsapp:" + BUSINESS_NUMBER


def test_an_sms_through_the_twilio_route_joins_the_customer_who_wrote_on_whatsapp_cloud(client: Client) -> None:
    from chalicelib.services import customers

    assert (
        deliver(client, whatsapp_text("wamid.HBgLMTUwMTcxMjI2NjEVAgASGBQzQUIyAA==", "first on WhatsApp")).status_code
        == 200
    )
    params = {
        "MessageSid": "SM" + "a1" * 16,
        "AccountSid": "AC" + "7e" * 16,
        "From": CUSTOMER_PHONE,
        "To": "+14155238886",
        "Body": "then by SMS",
        "NumMedia": "0",
    }
    signature = sign_form("https://hub.example.com/webhooks/twilio/messaging", params, "test-twilio-token")
    response = client.http.post(
        "/webhooks/twilio/messaging",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        body=urlencode(params),
    )

    assert response.status_code == 200
    customer = customers.find_customer(phone=CUSTOMER_PHONE)
    assert [m.body for m in thread(customer.conversation_id)] == ["first on WhatsApp", "then by SMS"]


def test_a_redelivered_webhook_stores_one_message_and_one_routing_task(client: Client, meta_hub: Hub) -> None:
    payload = whatsapp_text("wamid.HBgLMTUwMTcxMjI2NjEVAgASGBQzQUIzAA==", "are you there?")

    assert deliver(client, payload).status_code == 200
    items = meta_hub.item_count()
    assert deliver(client, payload).status_code == 200

    assert meta_hub.item_count() == items
    from chalicelib.services import customers

    customer = customers.find_customer(phone=CUSTOMER_PHONE)
    assert [m.body for m in thread(customer.conversation_id)] == ["are you there?"]
    assert len(meta_hub.routing_messages()) == 1


def test_a_batch_with_one_bad_event_still_files_the_good_one(client: Client) -> None:
    from chalicelib.services import customers

    payload = whatsapp_text("wamid.HBgLMTUwMTcxMjI2NjEVAgASGBQzQUI0AA==", "the good one")
    bad = {"from": "not-a-number", "id": "wamid.bad", "type": "text", "text": {"body": "x"}}
    payload["entry"][0]["changes"][0]["value"]["messages"].insert(0, bad)
    payload["entry"].append("not an entry")

    assert deliver(client, payload).status_code == 200
    customer = customers.find_customer(phone=CUSTOMER_PHONE)
    assert [m.body for m in thread(customer.conversation_id)] == ["the good one"]


# --- Replies on WhatsApp through the Cloud API, and their statuses ---------------------------------------


def whatsapp_cloud_customer(client: Client) -> str:
    from chalicelib.services.ingest import ingest

    conversation_id = ingest(sms("SMmeta-2", CUSTOMER_PHONE, "hi by sms")).conversation_id
    assert (
        deliver(client, whatsapp_text("wamid.HBgLMTUwMTcxMjI2NjEVAgASGBQzQUI1AA==", "hi on WhatsApp")).status_code
        == 200
    )
    return conversation_id


def test_a_reply_on_whatsapp_goes_through_the_cloud_api_and_its_status_webhook_updates_it(
    client: Client, sandbox: ProviderSandbox
) -> None:
    conversation_id = whatsapp_cloud_customer(client)

    outcome = reply(conversation_id, "Your parcel left the depot")

    assert outcome.status_code == 201, outcome.body
    [record] = meta_records(sandbox)
    assert record["channel"] == "whatsapp" and record["node"] == PHONE_NUMBER_ID
    assert record["request"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"body": "Your parcel left the depot", "preview_url": False},
    }
    [sent] = outbound_messages(conversation_id)
    assert (sent.channel.value, sent.provider, sent.status.value) == ("whatsapp", "meta", "accepted")
    assert sent.provider_message_id == record["id"] and sent.provider_message_id.startswith("wamid.")
    assert sent.sender_address == BUSINESS_NUMBER
    assert not [r for r in sandbox.records() if r["provider"] == "twilio"], "not through Twilio"

    assert deliver(client, whatsapp_status(sent.provider_message_id, "sent")).status_code == 200
    assert deliver(client, whatsapp_status(sent.provider_message_id, "delivered")).status_code == 200
    assert deliver(client, whatsapp_status(sent.provider_message_id, "sent")).status_code == 200  # late

    [updated] = outbound_messages(conversation_id)
    assert updated.status.value == "delivered"


def test_a_failed_status_stores_meta_s_error_code_and_title(client: Client) -> None:
    conversation_id = whatsapp_cloud_customer(client)
    outcome = reply(conversation_id, "You will not get this")
    wamid = outcome.body["provider_message_id"]
    failure = json.loads((EVENTS / "whatsapp_status_failed.json").read_bytes())
    failure["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = wamid

    assert deliver(client, failure).status_code == 200

    [failed] = outbound_messages(conversation_id)
    assert (failed.status.value, failed.error_code) == ("failed", "131026")
    assert failed.error_message == "Message undeliverable: Message Undeliverable."


def test_the_emulator_reports_delivery_back_to_the_hub_signed(meta_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's receipts reach the hub over HTTP, signed as Meta signs them."""
    from app import app
    from local.http_server import HttpServer

    server = HttpServer(app, "127.0.0.1", 0).start()
    reporting = ProviderSandbox(twilio_account_sid="AC" + "0" * 32, twilio_auth_token="t", sendgrid_api_key="k").start()
    try:
        emulator = reporting.add_emulator(
            MetaEmulator(
                access_token=ACCESS_TOKEN,
                phone_number_id=PHONE_NUMBER_ID,
                page_id=PAGE_ID,
                version=VERSION,
                app_secret=APP_SECRET,
                webhook_url=f"http://127.0.0.1:{server.port}/webhooks/meta",
                report_delivery=True,
            )
        )
        configure_meta(monkeypatch, reporting.url_for("meta"))
        whatsapp_conversation = file_directly(whatsapp_text("wamid.receipts-1", "hi"))
        failing = file_directly(whatsapp_text("wamid.receipts-2", "hi", wa_id="15550000000"))
        messenger = file_directly(messenger_text("m_meta_receipts_1", "hello from Messenger"))

        assert reply(whatsapp_conversation, "delivered soon").status_code == 201
        assert reply(failing, "never arrives").status_code == 201
        assert reply(messenger, "on Messenger").status_code == 201

        wait_for(lambda: [m.status.value for m in outbound_messages(whatsapp_conversation)] == ["delivered"])
        wait_for(lambda: [m.status.value for m in outbound_messages(failing)] == ["failed"])
        wait_for(lambda: [m.status.value for m in outbound_messages(messenger)] == ["delivered"])
        assert outbound_messages(failing)[0].error_code == "131026"
        emulator.join()
        callbacks = [c for record in reporting.records() for c in record["callbacks"]]
        assert len(callbacks) == 5 and all(c["http_status"] == 200 for c in callbacks), callbacks
    finally:
        reporting.stop()
        server.stop()


def file_directly(payload: dict[str, Any]) -> str:
    """File a webhook's one message through the channel parser and webhook_intake, as the route does
    (for tests whose app is served elsewhere); answers the sender's conversation id."""
    from chalicelib.channels import meta
    from chalicelib.channels.base import WebhookRequest
    from chalicelib.services import customers, webhook_intake

    [message] = meta.parse(WebhookRequest("POST", "/webhooks/meta", {}, encode(payload)))
    webhook_intake.process([message])
    return customers.find_customer(channel=message.channel.value, address=message.sender.value).conversation_id


# --- Messenger: the 24-hour window and the HUMAN_AGENT tag ---------------------------------------------


def test_messenger_replies_use_the_window_then_the_human_agent_tag_then_are_refused(
    client: Client, sandbox: ProviderSandbox
) -> None:
    from chalicelib.services import customers

    assert deliver(client, messenger_text("m_window_1", "Can someone help me?")).status_code == 200
    customer = customers.find_customer(channel="messenger", address=PSID)
    conversation_id = customer.conversation_id

    inside = reply(conversation_id, "Happy to help!")
    later = reply(conversation_id, "Following up on your question", now=utcnow() + timedelta(hours=30))
    closed = reply(conversation_id, "Too late", now=utcnow() + timedelta(days=8))

    assert inside.status_code == later.status_code == 201, (inside.body, later.body)
    assert (closed.status_code, closed.body["error"]["code"]) == (422, "messaging_window_closed")
    first, second = meta_records(sandbox)
    assert (first["channel"], first["node"]) == ("messenger", PAGE_ID)
    assert first["request"] == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Happy to help!"},
    }
    assert (second["request"]["messaging_type"], second["request"]["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert [m.provider_message_id for m in outbound_messages(conversation_id)] == [first["id"], second["id"]]

    delivery = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "delivery": {"mids": [first["id"]], "watermark": 1},
    }
    assert deliver(client, page_event("page", PAGE_ID, delivery)).status_code == 200
    assert [m.status.value for m in outbound_messages(conversation_id)] == ["delivered", "accepted"]


def test_an_instagram_message_and_its_reply(client: Client, sandbox: ProviderSandbox) -> None:
    from chalicelib.services import customers

    event = {
        "sender": {"id": IGSID},
        "recipient": {"id": INSTAGRAM_ID},
        "timestamp": int(time.time() * 1000),
        "message": {
            "mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1MzA5MjExODQ0",
            "text": "Do you ship to Canada?",
        },
    }
    assert deliver(client, page_event("instagram", INSTAGRAM_ID, event)).status_code == 200
    customer = customers.find_customer(channel="instagram", address=IGSID)

    outcome = reply(customer.conversation_id, "Yes, we do!")

    assert outcome.status_code == 201, outcome.body
    [record] = meta_records(sandbox)
    assert (record["channel"], record["node"]) == ("instagram", INSTAGRAM_ID)
    assert record["request"]["recipient"] == {"id": IGSID}


def test_a_refused_m_me_link_code_is_answered_on_messenger(client: Client, sandbox: ProviderSandbox) -> None:
    referral = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "timestamp": int(time.time() * 1000),
        "referral": {"ref": "LINK-2345AB", "source": "SHORTLINK", "type": "OPEN_THREAD"},
    }

    assert deliver(client, page_event("page", PAGE_ID, referral)).status_code == 200

    [notice] = meta_records(sandbox)
    assert notice["request"]["recipient"] == {"id": PSID}
    assert "code" in notice["request"]["message"]["text"].lower()


def test_an_m_me_link_brings_the_messenger_user_into_the_sms_customer_s_thread(
    client: Client, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.config import settings
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    monkeypatch.setenv("META_PAGE_USERNAME", "acme")
    settings.cache_clear()
    first = ingest(sms("SMmeta-link", CUSTOMER_PHONE, "Can we continue on Messenger?"))
    status, created = created_link(first.conversation_id, LinkTarget.MESSENGER)
    assert status == 201, created
    referral = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "timestamp": int(time.time() * 1000),
        "referral": {"ref": created["code"], "source": "SHORTLINK", "type": "OPEN_THREAD"},
    }

    assert deliver(client, page_event("page", PAGE_ID, referral)).status_code == 200
    assert deliver(client, page_event("page", PAGE_ID, referral)).status_code == 200  # redelivered
    assert deliver(client, messenger_text("m_after_link", "Hi, it's me")).status_code == 200

    assert customers.find_customer(channel="messenger", address=PSID).id == first.customer_id
    kinds = [(m.direction.value, m.channel.value) for m in thread(first.conversation_id)]
    assert kinds == [
        ("inbound", "sms"),
        ("outbound", "sms"),
        ("event", "messenger"),
        ("inbound", "messenger"),
        ("inbound", "messenger"),
    ]
    assert not meta_records(sandbox), "an accepted code needs no notice"


# --- The route: authenticity, the handshake, malformed bodies ---------------------------------------------


def test_a_forged_or_missing_signature_is_403_and_stores_nothing(client: Client, meta_hub: Hub) -> None:
    body = encode(whatsapp_text("wamid.forged", "let me in"))
    before = meta_hub.item_count()

    forged = deliver(client, body, signed(body, "not-the-app-secret"))
    unsigned = client.http.post("/webhooks/meta", headers={"Content-Type": "application/json"}, body=body)

    assert forged.status_code == unsigned.status_code == 403
    assert json.loads(forged.body)["error"]["code"] == "forbidden"
    assert meta_hub.item_count() == before
    assert meta_hub.routing_messages() == []


def test_the_subscription_handshake_answers_the_challenge_only_for_our_token(client: Client) -> None:
    def verify(token: str):
        query = urlencode({"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"})
        return client.http.get(f"/webhooks/meta?{query}")

    right, wrong = verify(VERIFY_TOKEN), verify("meatyhamhock")

    assert (right.status_code, right.body) == (200, b"1158201444")
    assert right.headers["Content-Type"].startswith("text/plain")
    assert wrong.status_code == 403


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"object": "page", "entry": "x"}', b"\xff\xfe"])
def test_a_signed_body_that_is_not_a_meta_envelope_is_400(client: Client, meta_hub: Hub, body: bytes) -> None:
    before = meta_hub.item_count()

    response = deliver(client, body)

    assert response.status_code == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == "invalid_request" and error["message"]
    assert meta_hub.item_count() == before


# --- Sending: Graph errors and the network -------------------------------------------------------------------


def outgoing(channel: str = "whatsapp", recipient: str = CUSTOMER_PHONE, **fields: Any) -> Outgoing:
    return Outgoing(
        channel=channel,
        recipient=recipient,
        body=fields.pop("body", "Hello"),
        hub_message_id="msg_test",
        timeout=fields.pop("timeout", 5.0),
        **fields,
    )


@pytest.fixture
def graph(sandbox: ProviderSandbox, meta_api: MetaEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chalicelib.config import settings

    sandbox.clear()
    configure_meta(monkeypatch, sandbox.url_for("meta"))
    yield
    settings.cache_clear()


def test_whatsapp_media_and_templates_reach_the_emulator_as_the_cloud_api_takes_them(
    graph: None, sandbox: ProviderSandbox
) -> None:
    from chalicelib.channels import meta

    image = meta.send(outgoing(media_urls=("https://cdn.example.com/parcel.png",), body="Is this yours?"))
    audio = meta.send(outgoing(media_urls=("https://cdn.example.com/note.mp3",), body="Listen"))
    template = meta.send(outgoing(template="order_update", template_language="en_US", template_parameters=("42",)))

    requests = [record["request"] for record in meta_records(sandbox)]
    assert [r["type"] for r in requests] == ["image", "text", "audio", "template"]
    assert requests[0]["image"] == {"link": "https://cdn.example.com/parcel.png", "caption": "Is this yours?"}
    assert image.provider_message_id == meta_records(sandbox)[0]["id"]
    assert audio.provider_message_id == meta_records(sandbox)[1]["id"], "the first part names the reply"
    assert template.status.value == "accepted"


def test_a_wrong_access_token_is_refused_without_leaking_it(graph: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.channels import meta

    monkeypatch.setenv("META_ACCESS_TOKEN", "EAAG-a-revoked-token")
    with pytest.raises(ProviderRejected) as refused:
        meta.send(outgoing())

    assert (refused.value.code, refused.value.http_status) == ("190", 401)
    assert "EAAG-a-revoked-token" not in str(refused.value) and ACCESS_TOKEN not in str(refused.value)


def test_a_messenger_user_who_cannot_be_reached_is_a_refusal(graph: None) -> None:
    from chalicelib.channels import meta

    with pytest.raises(ProviderRejected) as refused:
        meta.send(outgoing("messenger", "6245087298860000"))

    assert refused.value.code == "551" and "available" in refused.value.message


def test_an_attachment_refused_after_the_text_went_out_says_so(graph: None, sandbox: ProviderSandbox) -> None:
    from chalicelib.channels import meta

    with pytest.raises(ProviderRejected) as refused:
        meta.send(outgoing("messenger", PSID, media_urls=("ftp://files.example.com/a.png",)))

    [text] = meta_records(sandbox)
    assert refused.value.code == "100"
    assert f"went out as {text['id']}" in refused.value.message


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # the client gave up (a timeout test): nothing to report


class CannedGraph:
    """A stand-in Graph API answering one canned response (status, body, delay) to every POST."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes, float] = (200, b"{}", 0.0)
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, body, delay = canned.answer
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned(monkeypatch: pytest.MonkeyPatch) -> Iterator[CannedGraph]:
    from chalicelib.config import settings

    server = CannedGraph()
    configure_meta(monkeypatch, server.url)
    yield server
    server.stop()
    settings.cache_clear()


def graph_error(code: int, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"message": message, "type": "OAuthException", "code": code, **extra}}).encode()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, graph_error(1, "An unknown error occurred")),
        (503, b"<html>Service Unavailable</html>"),
        (429, graph_error(4, "Application request limit reached")),
        (400, graph_error(130429, "(#130429) Rate limit hit")),
        (400, graph_error(2, "Service temporarily unavailable", is_transient=True)),
    ],
)
def test_overload_and_server_errors_are_unavailable(canned: CannedGraph, status: int, body: bytes) -> None:
    from chalicelib.channels import meta

    canned.answer = (status, body, 0.0)
    with pytest.raises(ProviderUnavailable):
        meta.send(outgoing())


def test_a_graph_refusal_keeps_its_code_and_details(canned: CannedGraph) -> None:
    from chalicelib.channels import meta

    canned.answer = (
        400,
        graph_error(
            131047,
            "(#131047) Re-engagement message",
            error_data={"messaging_product": "whatsapp", "details": "More than 24 hours have passed"},
            fbtrace_id="AbCdEf",
        ),
        0.0,
    )
    with pytest.raises(ProviderRejected) as refused:
        meta.send(outgoing())

    assert (refused.value.code, refused.value.http_status) == ("131047", 400)
    assert refused.value.message == "(#131047) Re-engagement message: More than 24 hours have passed"


def test_timeouts_unreachable_hosts_and_odd_answers(canned: CannedGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.channels import meta
    from chalicelib.config import settings

    canned.answer = (200, b'{"messages": []}', 1.0)
    with pytest.raises(ProviderUnavailable):
        meta.send(outgoing(timeout=0.2))

    canned.answer = (200, b"not json", 0.0)
    with pytest.raises(ProviderRejected, match="not a JSON object"):
        meta.send(outgoing())
    canned.answer = (200, b'{"messages": []}', 0.0)
    with pytest.raises(ProviderRejected, match="no message id"):
        meta.send(outgoing())

    monkeypatch.setenv("META_GRAPH_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    settings.cache_clear()
    with pytest.raises(ProviderUnavailable):
        meta.send(outgoing())


# --- The emulator refuses what the Graph API refuses ----------------------------------------------------------


def graph_post(sandbox: ProviderSandbox, path: str, payload: Any, token: str = ACCESS_TOKEN) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        sandbox.url_for("meta") + path,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


WA_PATH = f"/{VERSION}/{PHONE_NUMBER_ID}/messages"
PAGE_PATH = f"/{VERSION}/{PAGE_ID}/messages"
IG_PATH = f"/{VERSION}/{INSTAGRAM_ID}/messages"
WA_TEXT = {"messaging_product": "whatsapp", "to": WA_ID, "type": "text", "text": {"body": "hi"}}
PAGE_TEXT = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        (WA_PATH, WA_TEXT, 200, None),
        (PAGE_PATH, PAGE_TEXT, 200, None),
        (f"/v20.0/{PHONE_NUMBER_ID}/messages", WA_TEXT, 400, 2500),
        (f"/{VERSION}/999999/messages", WA_TEXT, 400, 100),
        (WA_PATH, {**WA_TEXT, "messaging_product": "sms"}, 400, 100),
        (WA_PATH, {**WA_TEXT, "to": "whatsapp:+15017122661"}, 400, 100),
        (WA_PATH, {**WA_TEXT, "text": {"body": "x" * 4097}}, 400, 100),
        (WA_PATH, {**WA_TEXT, "type": "image", "image": {"link": "https://x.example/a.png", "id": "1"}}, 400, 100),
        (WA_PATH, {**WA_TEXT, "type": "audio", "audio": {"link": "https://x.example/a.mp3", "caption": "c"}}, 400, 100),
        (WA_PATH, {**WA_TEXT, "type": "template", "template": {"name": "t"}}, 400, 100),
        (PAGE_PATH, {**PAGE_TEXT, "messaging_type": "MESSAGE_TAG"}, 400, 100),
        (PAGE_PATH, {**PAGE_TEXT, "messaging_type": "MESSAGE_TAG", "tag": "ISSUE_RESOLUTION"}, 400, 100),
        (PAGE_PATH, {**PAGE_TEXT, "message": {"text": "x" * 2001}}, 400, 100),
        (IG_PATH, {**PAGE_TEXT, "message": {"text": "x" * 1001}}, 400, 100),
        (
            IG_PATH,
            {**PAGE_TEXT, "message": {"attachment": {"type": "file", "payload": {"url": "https://x/a"}}}},
            400,
            100,
        ),
        (PAGE_PATH, {**PAGE_TEXT, "message": {"text": "hi", "attachment": {}}}, 400, 100),
        (PAGE_PATH, {"messaging_type": "RESPONSE", "message": {"text": "hi"}}, 400, 100),
    ],
)
def test_the_emulator_checks_what_the_graph_api_checks(
    graph: None, sandbox: ProviderSandbox, path: str, payload: dict[str, Any], status: int, code: int | None
) -> None:
    answer_status, answer = graph_post(sandbox, path, payload)

    assert answer_status == status, answer
    if code is None:
        assert len(meta_records(sandbox)) == 1
    else:
        assert answer["error"]["code"] == code and answer["error"]["fbtrace_id"]
        assert meta_records(sandbox) == []


def test_the_emulator_wants_the_access_token(graph: None, sandbox: ProviderSandbox) -> None:
    status, answer = graph_post(sandbox, WA_PATH, WA_TEXT, token="EAAG-someone-else")

    assert (status, answer["error"]["code"], answer["error"]["type"]) == (401, 190, "OAuthException")


def test_concurrent_retries_of_one_batch_store_each_message_once(meta_hub: Hub) -> None:
    """Meta retries a batch it saw no 200 for, sometimes while the first delivery is still being
    handled: four deliveries of one three-message batch at once make one customer, three messages."""
    import threading

    from chalicelib.channels import meta
    from chalicelib.channels.base import WebhookRequest
    from chalicelib.services import customers, webhook_intake

    number = "+15017120042"
    messages = [
        {
            "from": number[1:],
            "id": f"wamid.RACE{n}",
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": f"part {n}"},
        }
        for n in range(3)
    ]
    body = encode(whatsapp_value(contacts=[{"profile": {"name": "Ada"}, "wa_id": number[1:]}], messages=messages))
    request = WebhookRequest("POST", "/webhooks/meta", {"x-hub-signature-256": signed(body)}, body)
    meta.verify(request)
    outcomes: list[Any] = []
    failures: list[BaseException] = []

    def deliver_once() -> None:
        try:
            outcomes.append(webhook_intake.process(meta.parse(request)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=deliver_once) for _ in range(4)]
    for thread_ in threads:
        thread_.start()
    for thread_ in threads:
        thread_.join()

    assert not failures
    stored_ids = {message_id for outcome in outcomes for message_id in outcome.stored}
    assert len(stored_ids) == 3
    found = customers.find_customer(phone=number)
    assert found is not None
    assert sorted(m.body for m in thread(found.conversation_id)) == ["part 0", "part 1", "part 2"]
    assert sum(outcome.duplicates for outcome in outcomes) == 9
