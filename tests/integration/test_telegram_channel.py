"""Telegram end to end against the AWS emulator: updates through the real route (chalice's test
client) with the secret-token header, verified contacts joining customers, and agent replies through
services.replies to the Telegram emulator over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.chat_sandbox.telegram import TelegramEmulator, text_update
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import crm_events
from tests.integration.test_ingest import sms
from tests.support.chat_sandbox import serving

EVENTS = Path(__file__).parents[2] / "events" / "telegram"
SECRET = "integration_telegram-secret"
BOT_TOKEN = "7000000001:AAH-integration_bot_token-xyz"
ADA = 123456789
ADA_PHONE = "+15017122661"
AGENT = "grace"


@dataclass
class TelegramHub:
    hub: Hub
    emulator: TelegramEmulator
    sandbox: ProviderSandbox


@pytest.fixture(scope="module")
def telegram_sandbox() -> Iterator[tuple[ProviderSandbox, TelegramEmulator]]:
    emulator = TelegramEmulator(BOT_TOKEN, blocked=("666",), username="AcmeHelpBot")
    with serving(emulator) as sandbox:
        yield sandbox, emulator


@pytest.fixture
def tg(hub: Hub, telegram_sandbox: tuple[ProviderSandbox, TelegramEmulator], monkeypatch: pytest.MonkeyPatch):
    from chalicelib.config import settings
    from chalicelib.domain.agents import AgentProfile
    from chalicelib.services import agents

    sandbox, emulator = telegram_sandbox
    sandbox.clear()
    emulator.reset()
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", SECRET)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "AcmeHelpBot")
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", sandbox.url_for("telegram"))
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "5")
    settings.cache_clear()
    agents.put_agent(AGENT, AgentProfile(name="Grace Hopper"))
    return TelegramHub(hub, emulator, sandbox)


# --- helpers ------------------------------------------------------------------------------------------


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def post(update: Any, secret: str | None = SECRET, raw: bytes | None = None) -> tuple[int, str]:
    """POST an update to /webhooks/telegram through the real route, as Telegram sends it."""
    from chalice.test import Client

    import app

    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    body = raw if raw is not None else json.dumps(update).encode()
    with Client(app.app) as client:
        response = client.http.post("/webhooks/telegram", headers=headers, body=body)
    text = response.body.decode() if isinstance(response.body, bytes) else response.body
    return response.status_code, text


def telegram_customer(user_id: int = ADA) -> Any:
    from chalicelib.services import customers

    return customers.find_customer(channel="telegram", address=str(user_id))


def thread(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    messages, _ = customers.list_messages(conversation_id, 100, None)
    return messages


def history(customer_id: str) -> list[dict[str, Any]]:
    from chalicelib.services import link_redemption

    return link_redemption.identity_history(customer_id)


def reply(conversation_id: str, key: str | None = None, **fields: Any) -> Any:
    from chalicelib.http.replies import send_reply

    return send_reply(conversation_id, {"agent_id": AGENT, **fields}, key)


def sends(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [record for record in sandbox.records() if record["provider"] == "telegram"]


# --- the route: secret, malformed bodies, retries -----------------------------------------------------


def test_a_text_update_is_stored_once_even_when_telegram_retries_it(tg: TelegramHub) -> None:
    update = event("text_message.json")

    first = post(update)
    retry = post(update)

    assert first == (200, "ok") and retry == (200, "ok")
    customer = telegram_customer()
    messages = thread(customer.conversation_id)
    assert [(m.body, m.provider_message_id) for m in messages] == [("Hi, my order #42 has not arrived", "578923410")]
    assert customer.provider_names == {"telegram": "Ada Lovelace (@ada_l)"}
    assert messages[0].recipient_address == "@AcmeHelpBot"
    assert len(tg.hub.routing_messages()) == 1  # the re-sent routing task is deduplicated too


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_a_missing_or_wrong_secret_header_is_403_and_stores_nothing(tg: TelegramHub, secret: str | None) -> None:
    before = tg.hub.item_count()

    status, body = post(event("text_message.json"), secret=secret)

    assert status == 403
    assert json.loads(body)["error"]["code"]
    assert tg.hub.item_count() == before
    assert telegram_customer() is None


def test_without_a_configured_secret_every_update_is_refused(tg: TelegramHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN")
    before = tg.hub.item_count()
    assert post(event("text_message.json"), secret="")[0] == 403
    assert post(event("text_message.json"))[0] == 403
    assert tg.hub.item_count() == before


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"message": {"text": "hi"}}', "update_id"),
        (b'{"update_id": "1", "message": {}}', "update_id"),
        (b'{"update_id": 99999999999999999999999, "message": {}}', "update_id"),
        (b'{"update_id": 5, "message": "hi"}', "'message' must be an object"),
    ],
)
def test_malformed_updates_are_400_with_a_reason(tg: TelegramHub, raw: bytes, says: str) -> None:
    before = tg.hub.item_count()

    status, body = post(None, raw=raw)

    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] and says in error["message"]
    assert tg.hub.item_count() == before


def test_group_messages_channel_posts_and_live_locations_are_acknowledged_and_not_stored(tg: TelegramHub) -> None:
    before = tg.hub.item_count()
    for name in ("group_message.json", "channel_post.json", "live_location_edit.json"):
        assert post(event(name)) == (200, "ok"), name
    assert tg.hub.item_count() == before


def test_an_edit_is_a_second_message_in_the_thread(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    post(event("edited_message.json"))
    post(event("edited_message.json"))

    bodies = [m.body for m in thread(telegram_customer().conversation_id)]
    assert bodies == ["Hi, my order #42 has not arrived", "(edited message 4521) Hi, my order #43 has not arrived"]


def test_a_photo_is_stored_with_its_file_id(tg: TelegramHub) -> None:
    post(event("photo_with_caption.json"))
    [stored] = thread(telegram_customer().conversation_id)
    assert stored.body == "The box arrived like this"
    assert stored.media[0].url is None and stored.media[0].content_id.startswith("AgACAgQAAxkB")


def test_a_start_deep_link_redeems_a_handoff_link_into_the_sms_thread(tg: TelegramHub) -> None:
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import links
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMtg-link", ADA_PHONE, "Can we move to Telegram?"))
    # The invitation goes by SMS; only the link matters here.
    link = links._allocate(first.customer_id, first.conversation_id, LinkTarget.TELEGRAM, AGENT)

    assert post(text_update(578930001, 5550001, f"/start LINK-{link.code}")) == (200, "ok")

    assert telegram_customer(5550001).id == first.customer_id
    assert [m.direction.value for m in thread(first.conversation_id)] == ["inbound", "event", "inbound"]


# --- verified contacts --------------------------------------------------------------------------------


def test_sharing_your_own_contact_joins_the_customer_who_wrote_by_sms(tg: TelegramHub) -> None:
    from chalicelib.services.ingest import ingest

    # Given a customer who wrote by SMS
    by_sms = ingest(sms("SMtg-1", ADA_PHONE, "Where is my order?"))
    crm_events(tg.hub, "conversation.channel_linked")

    # When the same person shares their own contact with the bot, and Telegram retries the update
    assert post(event("contact_own.json")) == (200, "ok")
    assert post(event("contact_own.json")) == (200, "ok")
    # And writes again on Telegram
    assert post(event("text_message.json")) == (200, "ok")

    # Then the Telegram identity belongs to the SMS customer, and everything is in one thread
    customer = telegram_customer()
    assert customer.id == by_sms.customer_id and customer.conversation_id == by_sms.conversation_id
    messages = thread(by_sms.conversation_id)
    assert [(m.channel.value, m.direction.value) for m in messages] == [
        ("sms", "inbound"),
        ("telegram", "event"),
        ("telegram", "inbound"),
        ("telegram", "inbound"),
    ]
    assert "shared their verified phone number +15017122661" in messages[1].body
    assert messages[2].body == "Contact: Ada Lovelace, 15017122661"
    # And the retry added no second identity, history entry or note
    kinds = [(i.kind.value, i.value) for i in customer.identities]
    assert kinds == [("phone", ADA_PHONE), ("telegram", str(ADA))]
    [entry] = history(customer.id)
    assert entry["identity"] == {"kind": "telegram", "value": str(ADA)}
    assert entry["verified_phone"] == ADA_PHONE and entry["provider_message"] == "telegram:578923415"
    # And the CRM hears of it once: the retry re-queues the same event (same id), in case it was lost
    linked = crm_events(tg.hub, "conversation.channel_linked")
    assert len({item["id"] for item in linked}) == 1
    assert linked[0]["data"]["customer_id"] == customer.id and linked[0]["data"]["linked_by"] == "verified_contact"
    assert linked[0]["data"]["identity"] == {"kind": "telegram", "value": str(ADA)}


def test_a_telegram_customer_who_proves_an_sms_customers_number_moves_to_them(tg: TelegramHub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    # Given Ada wrote on Telegram first (a customer of her own), and her number wrote by SMS
    post(event("text_message.json"))
    on_telegram = telegram_customer()
    by_sms = ingest(sms("SMtg-2", ADA_PHONE, "hello"))
    assert on_telegram.id != by_sms.customer_id

    # When she shares her own contact
    post(event("contact_own.json"))

    # Then her Telegram identity is the SMS customer's, and no longer the first customer's
    assert telegram_customer().id == by_sms.customer_id
    assert [i.kind.value for i in customers.get_customer(on_telegram.id).identities] == []
    [entry] = history(by_sms.customer_id)
    assert entry["previous_customer_id"] == on_telegram.id
    assert [m.channel.value for m in thread(by_sms.conversation_id)] == ["sms", "telegram", "telegram"]
    # And the reply on Telegram now goes to her from the SMS customer's conversation
    outcome = reply(by_sms.conversation_id, body="Found your order", channel="telegram")
    assert outcome.status_code == 201, outcome.body
    assert sends(tg.sandbox)[0]["chat_id"] == str(ADA)


def test_a_number_nobody_has_joins_the_telegram_customer(tg: TelegramHub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    post(event("text_message.json"))
    post(event("contact_own.json"))

    customer = telegram_customer()
    assert customer.phone == ADA_PHONE
    assert customers.find_customer(phone=ADA_PHONE).id == customer.id
    # So an SMS from that number lands in the same thread
    by_sms = ingest(sms("SMtg-3", ADA_PHONE, "texting now"))
    assert by_sms.customer_id == customer.id and not by_sms.new_customer
    assert "phone number +15017122661" in thread(customer.conversation_id)[1].body


def test_a_contact_as_the_very_first_message_joins_its_number_once_the_message_is_stored(tg: TelegramHub) -> None:
    """What ingest's call to `bind` after storing a first message does (see the report)."""
    from chalicelib.channels.base import WebhookRequest
    from chalicelib.channels.telegram import parse
    from chalicelib.services import customers, verified_contacts
    from chalicelib.services.ingest import ingest

    [msg] = parse(WebhookRequest("POST", "/webhooks/telegram", {}, json.dumps(event("contact_own.json")).encode()))
    stored = ingest(msg)
    verified_contacts.bind(msg)
    verified_contacts.bind(msg)  # a retry changes nothing

    customer = customers.get_customer(stored.customer_id)
    assert [(i.kind.value, i.value) for i in customer.identities] == [("telegram", str(ADA)), ("phone", ADA_PHONE)]
    assert customer.phone == ADA_PHONE and len(history(customer.id)) == 1


def test_a_contact_as_the_very_first_message_through_the_route(tg: TelegramHub) -> None:
    from chalicelib.services import customers

    post(event("contact_own.json"))
    assert customers.find_customer(phone=ADA_PHONE).id == telegram_customer().id


def test_concurrent_deliveries_of_one_contact_bind_once(tg: TelegramHub) -> None:
    from chalicelib.channels.base import WebhookRequest
    from chalicelib.channels.telegram import parse
    from chalicelib.services import customers, verified_contacts
    from chalicelib.services.ingest import ingest

    post(event("text_message.json"))  # Ada on Telegram: a customer of her own
    by_sms = ingest(sms("SMtg-5", ADA_PHONE, "hello"))
    [msg] = parse(WebhookRequest("POST", "/webhooks/telegram", {}, json.dumps(event("contact_own.json")).encode()))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=5)
            verified_contacts.bind(msg)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=deliver) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    customer = customers.get_customer(by_sms.customer_id)
    assert [(i.kind.value, i.value) for i in customer.identities] == [("phone", ADA_PHONE), ("telegram", str(ADA))]
    assert len(history(customer.id)) == 1
    assert [m.direction.value for m in thread(by_sms.conversation_id)] == ["inbound", "event"]


def test_someone_elses_contact_binds_nothing(tg: TelegramHub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    charles = ingest(sms("SMtg-4", "+447700900123", "I am Charles"))
    post(event("text_message.json"))

    post(event("contact_other.json"))

    ada = telegram_customer()
    assert ada.id != charles.customer_id
    assert customers.find_customer(phone="+447700900123").id == charles.customer_id
    assert history(ada.id) == [] and history(charles.customer_id) == []
    assert thread(ada.conversation_id)[-1].body == "Contact: Charles Babbage, +44 7700 900123"


# --- blocking -----------------------------------------------------------------------------------------


def test_blocking_and_unblocking_the_bot_is_recorded_as_consent(tg: TelegramHub) -> None:
    from chalicelib.services import customers

    post(event("text_message.json"))
    assert post(event("my_chat_member_kicked.json")) == (200, "ok")
    assert "telegram" in customers.get_customer(telegram_customer().id).opted_out
    assert post(event("my_chat_member_member.json")) == (200, "ok")
    assert "telegram" not in customers.get_customer(telegram_customer().id).opted_out


# --- replies --------------------------------------------------------------------------------------------


def test_a_reply_on_telegram_reaches_the_bot_api_and_is_stored_with_its_id(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    conversation_id = telegram_customer().conversation_id

    outcome = reply(conversation_id, "tg-key-1", body="We are on it", channel="telegram")

    assert outcome.status_code == 201, outcome.body
    [record] = sends(tg.sandbox)
    assert record["method"] == "sendMessage"
    assert record["request"] == {"chat_id": ADA, "text": "We are on it"}
    [stored] = [m for m in thread(conversation_id) if m.direction.value == "outbound"]
    assert (stored.provider, stored.provider_message_id, stored.status.value) == ("telegram", f"{ADA}:1", "sent")
    assert stored.recipient_address == str(ADA)
    # A repeat with the same key sends nothing new
    assert reply(conversation_id, "tg-key-1", body="We are on it", channel="telegram").status_code == 201
    assert len(sends(tg.sandbox)) == 1


def test_a_reply_without_a_channel_goes_back_on_telegram(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    outcome = reply(telegram_customer().conversation_id, body="Hello again")
    assert outcome.status_code == 201 and sends(tg.sandbox)[0]["chat_id"] == str(ADA)


def test_a_reply_with_a_picture_is_a_photo_with_its_caption(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    outcome = reply(
        telegram_customer().conversation_id,
        body="Is this your parcel?",
        media_urls=["https://cdn.example.com/parcel.JPG?size=large"],
        channel="telegram",
    )
    assert outcome.status_code == 201, outcome.body
    [record] = sends(tg.sandbox)
    assert record["method"] == "sendPhoto"
    assert record["request"]["caption"] == "Is this your parcel?"


def test_a_long_text_with_a_file_goes_as_a_text_then_the_document(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    body = "Here are the details. " * 60  # longer than a 1024-character caption
    outcome = reply(
        telegram_customer().conversation_id,
        body=body,
        media_urls=["https://cdn.example.com/invoice.pdf"],
        channel="telegram",
    )
    assert outcome.status_code == 201, outcome.body
    first, second = sends(tg.sandbox)
    assert (first["method"], first["request"]["text"]) == ("sendMessage", body)
    assert second["method"] == "sendDocument" and "caption" not in second["request"]
    assert second["result"]["document"]["file_name"] == "invoice.pdf"
    [stored] = [m for m in thread(telegram_customer().conversation_id) if m.direction.value == "outbound"]
    assert stored.provider_message_id == first["id"]


def test_a_file_telegram_cannot_fetch_goes_as_a_link(tg: TelegramHub) -> None:
    post(event("text_message.json"))
    url = "https://cdn.example.com/terms.docx"
    outcome = reply(telegram_customer().conversation_id, body="Our terms", media_urls=[url], channel="telegram")
    assert outcome.status_code == 201, outcome.body
    [record] = sends(tg.sandbox)
    assert (record["method"], record["request"]["text"]) == ("sendMessage", f"Our terms\n{url}")


def test_a_user_who_blocked_the_bot_makes_the_reply_fail_with_502(tg: TelegramHub) -> None:
    post(text_update(578930010, 666, "hi"))
    conversation_id = telegram_customer(666).conversation_id

    outcome = reply(conversation_id, body="Still there?", channel="telegram")

    assert outcome.status_code == 502
    assert outcome.body["error"]["code"] == "provider_error"
    assert "blocked by the user" in outcome.body["error"]["message"]
    [stored] = [m for m in thread(conversation_id) if m.direction.value == "outbound"]
    assert (stored.status.value, stored.error_code, stored.provider_message_id) == ("failed", "403", None)
    assert stored.error_message == "Forbidden: bot was blocked by the user"
    assert sends(tg.sandbox) == []


@pytest.mark.parametrize("status", [429, 500, 502])
def test_flood_control_and_server_errors_store_nothing_and_answer_503(tg: TelegramHub, status: int) -> None:
    post(event("text_message.json"))
    conversation_id = telegram_customer().conversation_id
    tg.emulator.fail_next(status)

    outcome = reply(conversation_id, "tg-retry", body="Hello", channel="telegram")

    assert outcome.status_code == 503
    assert [m for m in thread(conversation_id) if m.direction.value == "outbound"] == []
    # The same key then goes through
    assert reply(conversation_id, "tg-retry", body="Hello", channel="telegram").status_code == 201


def test_without_the_bot_token_telegram_replies_are_refused_before_sending(
    tg: TelegramHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    post(event("text_message.json"))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    outcome = reply(telegram_customer().conversation_id, body="Hello", channel="telegram")
    assert outcome.status_code >= 400 and "TELEGRAM_BOT_TOKEN" in json.dumps(outcome.body)
    assert sends(tg.sandbox) == []


# --- send() on its own: errors never show the token ---------------------------------------------------


def outgoing(recipient: str = str(ADA), body: str = "hi", media: tuple[str, ...] = ()) -> Any:
    from chalicelib.channels.base import Outgoing

    return Outgoing(channel="telegram", recipient=recipient, body=body, hub_message_id="msg_x", media_urls=media)


def test_a_wrong_token_is_refused_and_the_token_is_never_in_the_error(
    tg: TelegramHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.channels import telegram
    from chalicelib.domain.replies import ProviderRejected

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:wrong-token-value")
    with pytest.raises(ProviderRejected) as raised:
        telegram.send(outgoing())
    assert (raised.value.code, raised.value.message, raised.value.http_status) == ("401", "Unauthorized", 401)
    assert "wrong-token-value" not in str(raised.value)


def test_an_unreachable_api_is_unavailable_without_the_token_in_the_reason(
    tg: TelegramHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.channels import telegram
    from chalicelib.config import settings
    from chalicelib.domain.replies import ProviderUnavailable

    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", url)
    settings.cache_clear()
    with pytest.raises(ProviderUnavailable) as raised:
        telegram.send(outgoing())
    assert BOT_TOKEN not in str(raised.value) and "AAH-integration" not in str(raised.value)


def test_an_error_description_echoing_the_token_is_redacted(tg: TelegramHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.channels import telegram
    from chalicelib.config import settings
    from chalicelib.domain.replies import ProviderRejected

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.dumps({"ok": False, "error_code": 400, "description": f"Bad Request: {self.path}"})
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        settings.cache_clear()
        with pytest.raises(ProviderRejected) as raised:
            telegram.send(outgoing())
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.message == "Bad Request: /bot<bot token>/sendMessage"
    assert BOT_TOKEN not in str(raised.value)


def test_a_file_refused_after_the_long_text_went_out_is_a_refusal_that_says_so(tg: TelegramHub) -> None:
    from chalicelib.channels import telegram
    from chalicelib.domain.replies import ProviderRejected

    with pytest.raises(ProviderRejected) as raised:
        telegram.send(outgoing(body="x" * 2000, media=("ftp://files.example.com/a.pdf",)))
    assert "the text was sent" in raised.value.message and "wrong HTTP URL" in raised.value.message
    assert [record["method"] for record in sends(tg.sandbox)] == ["sendMessage"]


# --- the emulator ---------------------------------------------------------------------------------------


def call(sandbox: ProviderSandbox, method: str, params: dict[str, Any], token: str = BOT_TOKEN) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{sandbox.url_for('telegram')}/bot{token}/{method}",
        data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("method", "params", "status", "description"),
    [
        ("sendMessage", {"text": "hi"}, 400, "Bad Request: chat_id is empty"),
        ("sendMessage", {"chat_id": ADA}, 400, "Bad Request: message text is empty"),
        ("sendMessage", {"chat_id": ADA, "text": "  \n "}, 400, "Bad Request: message text is empty"),
        ("sendMessage", {"chat_id": ADA, "text": "x" * 4097}, 400, "Bad Request: message is too long"),
        ("sendMessage", {"chat_id": "not a chat", "text": "hi"}, 400, "Bad Request: chat not found"),
        ("sendMessage", {"chat_id": 666, "text": "hi"}, 403, "Forbidden: bot was blocked by the user"),
        ("sendPhoto", {"chat_id": ADA}, 400, "Bad Request: there is no photo in the request"),
        ("sendDocument", {"chat_id": ADA, "document": ""}, 400, "Bad Request: there is no document in the request"),
        (
            "sendPhoto",
            {"chat_id": ADA, "photo": "https://x.example/a.png", "caption": "c" * 1025},
            400,
            "Bad Request: message caption is too long",
        ),
        ("sendNothing", {}, 404, "Not Found"),
    ],
)
def test_the_emulator_checks_what_telegram_checks(
    tg: TelegramHub, method: str, params: dict[str, Any], status: int, description: str
) -> None:
    answer = call(tg.sandbox, method, params)
    assert answer == (status, {"ok": False, "error_code": status, "description": description})
    assert sends(tg.sandbox) == []


def test_the_emulator_wants_the_configured_token(tg: TelegramHub) -> None:
    assert call(tg.sandbox, "getMe", {}, token="1:other") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )


def test_the_emulator_counts_message_ids_per_chat_and_reads_form_bodies(tg: TelegramHub) -> None:
    import urllib.request

    assert call(tg.sandbox, "sendMessage", {"chat_id": 1001, "text": "a"})[1]["result"]["message_id"] == 1
    assert call(tg.sandbox, "sendMessage", {"chat_id": 1001, "text": "b"})[1]["result"]["message_id"] == 2
    request = urllib.request.Request(
        f"{tg.sandbox.url_for('telegram')}/bot{BOT_TOKEN}/SENDMESSAGE?chat_id=1002",
        data=b"text=hello+there",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["result"]["message_id"] == 1 and answer["result"]["text"] == "hello there"
    assert [record["id"] for record in sends(tg.sandbox)] == ["1001:1", "1001:2", "1002:1"]


def test_the_emulator_shows_what_bot_setup_looks_like_and_delivers_updates(tg: TelegramHub) -> None:
    status, me = call(tg.sandbox, "getMe", {})
    assert status == 200 and me["result"]["is_bot"] is True and me["result"]["username"] == "AcmeHelpBot"
    assert me["result"]["id"] == 7000000001

    refused = call(tg.sandbox, "setWebhook", {"url": "http://hub.example.com/webhooks/telegram"})
    assert refused[1]["description"] == "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    bad_secret = call(tg.sandbox, "setWebhook", {"url": "https://hub.example.com/w", "secret_token": "no spaces!"})
    assert bad_secret[0] == 400

    received: list[tuple[str, dict[str, str], bytes]] = []

    class Hub(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/telegram"
        assert call(tg.sandbox, "setWebhook", {"url": url, "secret_token": SECRET}) == (
            200,
            {"ok": True, "result": True, "description": "Webhook was set"},
        )
        info = call(tg.sandbox, "getWebhookInfo", {})[1]["result"]
        assert info["url"] == url and "secret_token" not in json.dumps(info)
        assert tg.emulator.deliver(text_update(1, ADA, "hi")) == (200, "ok")
    finally:
        server.shutdown()
        server.server_close()
        call(tg.sandbox, "deleteWebhook", {})
    [(path, headers, body)] = received
    assert path == "/webhooks/telegram"
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
    assert json.loads(body)["message"]["text"] == "hi"
    assert call(tg.sandbox, "getWebhookInfo", {})[1]["result"]["url"] == ""


def test_a_notification_reaches_a_telegram_customer_and_joins_their_thread(tg: TelegramHub) -> None:
    from chalicelib.http.notifications import create_notification
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    stored = ingest(chat_message_from("4242", "tg-notify-1"))
    outcome = create_notification(
        {"customer": {"id": stored.customer_id}, "text": "Your order has shipped", "channels": ["telegram"]},
        "notify-telegram-1",
    )

    assert outcome.status_code == 202, outcome.body  # accepted: sent, delivery still to come
    assert (outcome.body["status"], outcome.body["channel"]) == ("sent", "telegram")
    [sent] = [r for r in tg.sandbox.records() if r["provider"] == "telegram"]
    assert "4242" in json.dumps(sent) and "Your order has shipped" in json.dumps(sent)
    messages, _ = customers.list_messages(stored.conversation_id, 50, None)
    assert [(m.direction.value, m.channel.value, m.provider) for m in messages][-1] == (
        "outbound",
        "telegram",
        "telegram",
    )


def chat_message_from(user_id: str, update_id: str) -> Any:
    from chalicelib.domain.identity import user_id_identity
    from chalicelib.domain.messages import Channel, InboundMessage

    return InboundMessage(
        provider="telegram",
        provider_message_id=update_id,
        channel=Channel.TELEGRAM,
        sender=user_id_identity("telegram", user_id),
        sender_address=user_id,
        recipient_address="AcmeHelpBot",
        body="hello",
    )


# --- a satisfaction survey: inline keyboard out, a button tap back -------------------------------------


def test_a_survey_goes_as_an_inline_keyboard_and_a_tap_rates_it(
    tg: TelegramHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.agents import AgentProfile, AgentStatus
    from chalicelib.services import agents, routing
    from tests.integration.routing_support import Workers, configure

    configure(monkeypatch, surveys={"delay_seconds": 0}, offer_timeout_seconds=900)
    agents.put_agent(AGENT, AgentProfile(name="Grace Hopper", capacity={"telegram": 2}))
    routing.set_agent_status(AGENT, AgentStatus.AVAILABLE)
    workers = Workers(tg.hub)
    update = event("text_message.json")
    assert post(update)[0] == 200
    customer = telegram_customer()
    workers.drain(until=lambda: conversation_of(customer.conversation_id).offer_id is not None)
    routing.accept_offer(conversation_of(customer.conversation_id).offer_id)
    assert reply(customer.conversation_id, body="Done, it ships today.").status_code == 201
    routing.resolve(customer.conversation_id)
    workers.drain(until=lambda: conversation_of(customer.conversation_id).survey is not None, timeout=10)
    workers.drain()

    [question] = [record for record in sends(tg.sandbox) if "reply_markup" in record["request"]]
    keyboard = question["request"]["reply_markup"]
    keyboard = json.loads(keyboard) if isinstance(keyboard, str) else keyboard
    assert [row[0]["callback_data"] for row in keyboard["inline_keyboard"]] == [f"csat:{n}" for n in (5, 4, 3, 2, 1)]

    tap = event("callback_query.json")
    tap["update_id"] = update["update_id"] + 1
    tap["callback_query"]["from"]["id"] = update["message"]["from"]["id"]
    tap["callback_query"]["message"]["chat"]["id"] = update["message"]["chat"]["id"]
    tap["callback_query"]["data"] = "csat:4"
    assert post(tap)[0] == 200
    assert post(tap)[0] == 200, "Telegram retried the update"
    workers.drain()
    survey = conversation_of(customer.conversation_id).survey
    assert (survey.rating, survey.status, survey.agent_ids) == (4, "rated", [AGENT])
    assert conversation_of(customer.conversation_id).status == "resolved"


def conversation_of(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)
