"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram): verified exactly as Meta signs them,
parsed item by item from the payloads in Meta's documentation (events/meta/)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.channels import meta
from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import IdentityKind
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, StatusUpdate
from chalicelib.domain.webhook_items import Skipped

EVENTS = Path(__file__).parents[2] / "events" / "meta"
APP_SECRET = "6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d"
VERIFY_TOKEN = "meatyhamhock"
GRAPH = "https://graph.facebook.com"


@pytest.fixture(autouse=True)
def meta_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chalicelib.config import settings

    monkeypatch.setenv("META_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("META_VERIFY_TOKEN", VERIFY_TOKEN)
    monkeypatch.setenv("META_GRAPH_BASE_URL", GRAPH)
    monkeypatch.setenv("META_GRAPH_VERSION", "v21.0")
    settings.cache_clear()
    yield
    settings.cache_clear()


def raw(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    """As Meta computes it: HMAC-SHA256 of the payload bytes, keyed with the app secret, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(body: bytes, signature: str | None = None, **headers: str) -> WebhookRequest:
    all_headers = {"content-type": "application/json", **headers}
    if signature is not None:
        all_headers["x-hub-signature-256"] = signature
    return WebhookRequest(method="POST", path="/webhooks/meta", headers=all_headers, body=body)


def parse(body: bytes | dict[str, Any]) -> list[Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return meta.parse(request(data))


def one(items: list[Any], kind: type) -> Any:
    [item] = items
    assert isinstance(item, kind), item
    return item


# --- Signature ------------------------------------------------------------------------------------


def test_a_body_signed_with_the_app_secret_verifies() -> None:
    body = raw("whatsapp_text.json")

    meta.verify(request(body, meta_signature(body)))
    meta.verify(request(body, meta_signature(body).upper().replace("SHA256=", "sha256=")))  # hex case


def test_non_ascii_escaped_by_meta_is_verified_over_the_raw_bytes_not_a_reserialisation() -> None:
    body = raw("whatsapp_text.json")
    assert b"arriv\\u00e9e" in body, "Meta escapes non-ASCII text as \\uXXXX"
    signature = meta_signature(body)
    reserialised = json.dumps(json.loads(body), ensure_ascii=False).encode()

    meta.verify(request(body, signature))
    with pytest.raises(WebhookRejected):
        meta.verify(request(reserialised, signature))
    message = one(parse(body), InboundMessage)
    assert message.body == "Bonjour, ma commande n'est pas arrivée"


def test_escaped_slashes_are_verified_as_sent_and_read_as_slashes() -> None:
    body = raw("messenger_attachment.json")
    assert b"https:\\/\\/scontent" in body

    meta.verify(request(body, meta_signature(body)))
    with pytest.raises(WebhookRejected):
        meta.verify(request(body.replace(b"\\/", b"/"), meta_signature(body)))
    assert one(parse(body), InboundMessage).media[0].url.startswith("https://scontent.xx.fbcdn.net/")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha1=" + "0" * 40,
        "sha256=",
        "sha256=" + "g" * 64,
        "sha256=" + "0" * 63,
        "sha256 =" + "0" * 64,
        "0" * 64,
        "sha256=" + "0" * 64,
    ],
)
def test_missing_garbled_or_wrong_signatures_are_refused(header: str | None) -> None:
    body = raw("whatsapp_text.json")
    with pytest.raises(WebhookRejected):
        meta.verify(request(body, header))


def test_a_tampered_body_or_another_apps_secret_is_refused() -> None:
    body = raw("messenger_text.json")
    tampered = body.replace(b"Is my order", b"Was my order")

    with pytest.raises(WebhookRejected):
        meta.verify(request(tampered, meta_signature(body)))
    with pytest.raises(WebhookRejected):
        meta.verify(request(body, meta_signature(body, "another-apps-secret")))


def test_without_a_configured_app_secret_everything_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("META_APP_SECRET")
    body = raw("whatsapp_text.json")

    with pytest.raises(WebhookRejected, match="not configured"):
        meta.verify(request(body, meta_signature(body, "")))


# --- Subscription handshake --------------------------------------------------------------------------


def handshake(**query: str) -> str:
    pairs = [(f"hub.{name}", value) for name, value in query.items()]
    return meta.handshake(WebhookRequest(method="GET", path="/webhooks/meta", headers={}, body=b"", query=pairs))


def test_the_handshake_echoes_the_challenge_for_our_verify_token() -> None:
    assert handshake(mode="subscribe", verify_token=VERIFY_TOKEN, challenge="1158201444") == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"mode": "subscribe", "verify_token": "wrong", "challenge": "1"},
        {"mode": "subscribe", "verify_token": VERIFY_TOKEN.upper(), "challenge": "1"},
        {"mode": "unsubscribe", "verify_token": VERIFY_TOKEN, "challenge": "1"},
        {"verify_token": VERIFY_TOKEN, "challenge": "1"},
        {"mode": "subscribe", "challenge": "1"},
    ],
)
def test_the_handshake_refuses_a_wrong_token_or_mode(query: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        handshake(**query)


def test_an_empty_configured_verify_token_refuses_every_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_VERIFY_TOKEN", "")
    with pytest.raises(WebhookRejected):
        handshake(mode="subscribe", verify_token="", challenge="1")


def test_a_handshake_without_a_usable_challenge_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        handshake(mode="subscribe", verify_token=VERIFY_TOKEN)
    with pytest.raises(MalformedPayload):
        handshake(mode="subscribe", verify_token=VERIFY_TOKEN, challenge="9" * 1000)


def test_the_acknowledgement_is_meta_s_event_received() -> None:
    assert meta.acknowledgement(object()) == "EVENT_RECEIVED"
    assert meta.ACKNOWLEDGEMENT_TYPE == "text/plain; charset=utf-8"


# --- WhatsApp messages -------------------------------------------------------------------------------

MEDIA = f"{GRAPH}/v21.0"


@pytest.mark.parametrize(
    ("name", "body", "media"),
    [
        ("whatsapp_text.json", "Bonjour, ma commande n'est pas arrivée", []),
        ("whatsapp_image.json", "This is a caption", [(f"{MEDIA}/2754859441498128", "image/jpeg", None)]),
        (
            "whatsapp_document.json",
            "My invoice",
            [(f"{MEDIA}/1003383421387256", "application/pdf", "invoice-0042.pdf")],
        ),
        ("whatsapp_audio.json", "", [(f"{MEDIA}/1288271068718766", "audio/ogg", None)]),
        ("whatsapp_video.json", "The box arrived like this", [(f"{MEDIA}/1175839006747193", "video/mp4", None)]),
        ("whatsapp_sticker.json", "", [(f"{MEDIA}/1055410982290613", "image/webp", None)]),
        (
            "whatsapp_location.json",
            "Location: 37.483307,-122.148981 (Main Street Beach, 1 Hacker Way, Menlo Park, CA 94025)",
            [],
        ),
        ("whatsapp_contacts.json", "Contact: Kerry Fisher, +1 (650) 555-1234, kfisher@fb.com", []),
        ("whatsapp_interactive_button_reply.json", "Track my order", []),
        ("whatsapp_interactive_list_reply.json", "Tuesday 10:00", []),
        ("whatsapp_button.json", "Stop promotions", []),
        ("whatsapp_unsupported.json", "[unsupported WhatsApp message: Message type unknown]", []),
    ],
)
def test_every_whatsapp_message_type_becomes_a_message_from_the_phone_number(
    name: str, body: str, media: list[tuple[str, str, str | None]]
) -> None:
    data = json.loads(raw(name))
    wamid = data["entry"][0]["changes"][0]["value"]["messages"][0]["id"]

    message = one(parse(raw(name)), InboundMessage)

    assert message.provider == "meta" and message.provider_message_id == wamid
    assert message.dedupe_key == f"meta:{wamid}"
    assert message.channel is Channel.WHATSAPP
    assert message.sender.kind is IdentityKind.PHONE and message.sender.value == "+16315551234"
    assert message.sender_address == "whatsapp:+16315551234"
    assert message.recipient_address == "whatsapp:+15550783881"
    assert message.profile_name == "Kerry Fisher"
    assert message.provider_account == "106540352242922"
    assert message.body == body
    assert [(m.url, m.content_type, m.filename) for m in message.media] == media


def test_a_wa_id_is_the_same_identity_as_that_number_written_any_other_way() -> None:
    from chalicelib.domain.identity import phone_identity

    message = one(parse(raw("whatsapp_text.json")), InboundMessage)

    assert message.sender == phone_identity("whatsapp:+1 631-555-1234") == phone_identity("(631) 555-1234")


def test_a_reaction_and_other_non_messages_are_skipped_with_a_reason() -> None:
    skipped = one(parse(raw("whatsapp_reaction.json")), Skipped)
    assert skipped.kind == "whatsapp.reaction" and "reaction" in skipped.reason

    data = json.loads(raw("whatsapp_text.json"))
    message = data["entry"][0]["changes"][0]["value"]["messages"][0]
    for kind in ("system", "request_welcome", "a_type_from_the_future"):
        message.update(type=kind)
        assert one(parse(data), Skipped).kind == f"whatsapp.{kind}"


@pytest.mark.parametrize(
    ("name", "status", "error_code", "error_message", "at"),
    [
        ("whatsapp_status_sent.json", DeliveryStatus.SENT, None, None, 1603086313),
        ("whatsapp_status_delivered.json", DeliveryStatus.DELIVERED, None, None, 1603086314),
        ("whatsapp_status_read.json", DeliveryStatus.READ, None, None, 1603086390),
        (
            "whatsapp_status_failed.json",
            DeliveryStatus.FAILED,
            "131026",
            "Message undeliverable: Message Undeliverable.",
            1603086320,
        ),
    ],
)
def test_whatsapp_statuses_become_status_updates_for_the_wamid(
    name: str, status: DeliveryStatus, error_code: str | None, error_message: str | None, at: int
) -> None:
    data = json.loads(raw(name))
    wamid = data["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]

    update = one(parse(raw(name)), StatusUpdate)

    assert (update.provider, update.provider_message_id, update.status) == ("meta", wamid, status)
    assert (update.error_code, update.error_message) == (error_code, error_message)
    assert update.occurred_at == datetime.fromtimestamp(at, UTC)


def test_one_envelope_with_messages_and_statuses_yields_both() -> None:
    message, update = parse(raw("whatsapp_mixed.json"))

    assert isinstance(message, InboundMessage) and message.body == "Thanks! One more question"
    assert isinstance(update, StatusUpdate) and update.status is DeliveryStatus.READ


def test_statuses_that_are_not_delivery_states_and_other_fields_are_skipped() -> None:
    data = json.loads(raw("whatsapp_status_sent.json"))
    data["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "deleted"
    assert one(parse(data), Skipped).kind == "whatsapp.status.deleted"

    data["entry"][0]["changes"][0]["field"] = "account_update"
    assert one(parse(data), Skipped).kind == "whatsapp.account_update"


def test_a_status_time_in_the_future_is_not_believed() -> None:
    data = json.loads(raw("whatsapp_status_sent.json"))
    data["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"] = str(10**11)

    update = one(parse(data), StatusUpdate)

    assert update.occurred_at <= datetime.now(UTC) + timedelta(seconds=1)


# --- Messenger --------------------------------------------------------------------------------------

PSID = "6245087298860497"
PAGE = "107485388405331"


def test_a_messenger_text_comes_from_the_page_scoped_id() -> None:
    message = one(parse(raw("messenger_text.json")), InboundMessage)

    assert message.channel is Channel.MESSENGER
    assert message.sender.kind is IdentityKind.MESSENGER and message.sender.value == PSID
    assert message.provider_message_id.startswith("m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM")
    assert message.body == "Is my order on its way?"
    assert (message.sender_address, message.recipient_address) == (f"messenger:{PSID}", f"messenger:{PAGE}")
    assert message.link_code is None


def test_a_messenger_attachment_keeps_its_url() -> None:
    message = one(parse(raw("messenger_attachment.json")), InboundMessage)

    [media] = message.media
    assert media.url is not None and media.url.startswith("https://scontent.xx.fbcdn.net/v/t1.15752-9/329054_photo.jpg")
    assert media.filename == "329054_photo.jpg"
    assert message.body == ""


def test_a_get_started_postback_after_an_m_me_link_carries_the_ref_as_link_code() -> None:
    message = one(parse(raw("messenger_postback_get_started.json")), InboundMessage)

    assert message.body == "Get Started"
    assert message.link_code == "LINK-7QK2M9"
    assert message.provider_message_id == "m_1457764197618:41d102a3e1ae206a38"


def test_a_referral_without_a_message_gets_an_id_that_a_redelivery_repeats() -> None:
    first = one(parse(raw("messenger_referral.json")), InboundMessage)
    again = one(parse(raw("messenger_referral.json")), InboundMessage)

    assert first.link_code == "LINK-7QK2M9" and first.body == ""
    assert first.provider_message_id == again.provider_message_id == f"referral:{PSID}:1458692752478"

    data = json.loads(raw("messenger_referral.json"))
    del data["entry"][0]["messaging"][0]["referral"]["ref"]
    assert one(parse(data), Skipped).kind == "messenger.referral"
    data = json.loads(raw("messenger_referral.json"))
    del data["entry"][0]["messaging"][0]["timestamp"]
    assert one(parse(data), Skipped).kind == "messenger.event"


def test_a_delivery_becomes_one_status_per_mid() -> None:
    updates = parse(raw("messenger_delivery.json"))

    assert [(u.provider_message_id, u.status) for u in updates] == [
        ("m_1458668856218:ed81099e15d3f4f233", DeliveryStatus.DELIVERED),
        ("m_1458668856253:ab1234cd5678ef9012", DeliveryStatus.DELIVERED),
    ]
    assert updates[0].occurred_at == datetime.fromtimestamp(1458668856.253, UTC)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("messenger_echo.json", "messenger.echo"),
        ("messenger_read.json", "messenger.read"),
        ("messenger_reaction.json", "messenger.reaction"),
    ],
)
def test_echoes_read_watermarks_and_reactions_are_skipped(name: str, kind: str) -> None:
    assert one(parse(raw(name)), Skipped).kind == kind


def test_a_messenger_batch_files_each_event_on_its_own() -> None:
    items = parse(raw("messenger_batch.json"))

    kinds = [type(item).__name__ for item in items]
    assert kinds == ["InboundMessage", "InboundMessage", "Skipped", "Skipped", "StatusUpdate"]
    first, second = items[0], items[1]
    assert (first.sender.value, first.body) == (PSID, "first")
    assert (second.sender.value, second.body) == ("7361189002347711", "Café au lait?")
    assert [item.kind for item in items[2:4]] == ["messenger.echo", "messenger.read"]
    assert items[4].provider_message_id == "m_batch_outbound_DDDDDDDDDDDDDDDDD"


def test_unknown_messenger_events_and_entries_are_skipped() -> None:
    data = json.loads(raw("messenger_text.json"))
    event = data["entry"][0]["messaging"][0]
    del event["message"]
    event["hologram"] = {"id": 1}
    data["entry"].append({"id": PAGE, "time": 1, "standby": [copy.deepcopy(event)]})
    data["entry"].append({"id": PAGE, "time": 1, "changes": [{"field": "feed", "value": {}}]})

    assert [item.kind for item in parse(data)] == ["messenger.hologram", "messenger.standby", "messenger.changes"]


def test_a_chat_plugin_user_ref_is_not_an_answerable_sender() -> None:
    data = json.loads(raw("messenger_text.json"))
    data["entry"][0]["messaging"][0]["sender"] = {"user_ref": "chat-plugin-ref-1"}

    assert "user_ref" in one(parse(data), Skipped).reason


# --- Instagram ----------------------------------------------------------------------------------------


def test_an_instagram_message_comes_from_the_instagram_scoped_id() -> None:
    message = one(parse(raw("instagram_text.json")), InboundMessage)

    assert message.channel is Channel.INSTAGRAM
    assert message.sender.kind is IdentityKind.INSTAGRAM and message.sender.value == "1914827532176842"
    assert message.body == "Hi! Do you ship to Canada?"
    assert len(message.provider_message_id) > 128, "Instagram mids are long; the hub keeps them whole"


def test_instagram_attachments_echoes_seen_and_reactions() -> None:
    attachment = one(parse(raw("instagram_attachment.json")), InboundMessage)
    assert attachment.media[0].url.startswith("https://lookaside.fbsbx.com/ig_messaging_cdn/")

    assert one(parse(raw("instagram_echo.json")), Skipped).kind == "instagram.echo"
    assert one(parse(raw("instagram_reaction.json")), Skipped).kind == "instagram.reaction"
    seen = one(parse(raw("instagram_read.json")), StatusUpdate)
    assert seen.status is DeliveryStatus.READ and seen.provider_message_id.endswith("MDgwMgZDZD")


def test_deleted_and_unsupported_instagram_messages() -> None:
    data = json.loads(raw("instagram_text.json"))
    data["entry"][0]["messaging"][0]["message"] = {"mid": "aWdfZAG1", "is_deleted": True}
    assert one(parse(data), Skipped).kind == "instagram.deleted"

    data["entry"][0]["messaging"][0]["message"] = {"mid": "aWdfZAG2", "is_unsupported": True}
    assert one(parse(data), InboundMessage).body == "[unsupported Instagram message]"


# --- Hostile input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'"whatsapp_business_account"',
        b"{}",
        b'{"object": 7, "entry": []}',
        b'{"object": "page"}',
        b'{"object": "page", "entry": {"id": "1"}}',
        b'{"object": "whatsapp_business_account", "entry": null}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"object": "page", "entry": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_an_envelope_that_is_not_meta_s_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        meta.parse(request(body))


def test_an_object_the_hub_does_not_handle_is_skipped_not_refused() -> None:
    assert one(parse({"object": "user", "entry": [{"id": "1", "changes": []}]}), Skipped).kind == "object:user"


def whatsapp_with(**overrides: Any) -> dict[str, Any]:
    data = json.loads(raw("whatsapp_text.json"))
    data["entry"][0]["changes"][0]["value"]["messages"][0].update(overrides)
    return data


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "wamid." + "A" * 5000},
        {"id": "wamid with spaces"},
        {"id": 12345.5},
        {"id": None},
        {"from": "+16315551234"},
        {"from": "1631555123x"},
        {"from": "1"},
        {"from": "9" * 20},
        {"from": 16315551234},
        {"type": "image", "image": {"id": "../../../me/accounts", "mime_type": "image/jpeg"}},
        {"type": "image", "image": "2754859441498128"},
        {"type": "location", "location": {"latitude": True, "longitude": 1}},
        {"type": "location", "location": {"latitude": "NaN", "longitude": "1"}},
        {"type": "location", "location": {"latitude": 91, "longitude": 0}},
        {"type": "contacts", "contacts": [{"name": "Kerry"}]},
    ],
)
def test_a_single_bad_event_is_skipped_and_the_rest_of_the_batch_is_kept(overrides: dict[str, Any]) -> None:
    data = whatsapp_with(**overrides)
    good = json.loads(raw("whatsapp_image.json"))["entry"][0]
    data["entry"].append(good)

    bad, kept = parse(data)

    assert isinstance(bad, Skipped) and bad.kind == "whatsapp.message", bad
    assert isinstance(kept, InboundMessage) and kept.body == "This is a caption"


def test_text_fields_of_other_types_are_not_read_as_text() -> None:
    message = one(parse(whatsapp_with(text={"body": {"$gt": ""}})), InboundMessage)
    assert message.body == ""


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copied = copy.deepcopy(data)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copied


HOSTILE_VALUES = [
    None,
    [],
    {},
    0,
    -1,
    10**30,
    True,
    1.5e308,
    "",
    "x" * 3000,
    "../../x",
    "\u0000\ud7ff",
    [{}],
    {"a": [None]},
]
ALLOWED = (InboundMessage, StatusUpdate, Skipped)


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_any_field_of_any_sample_replaced_by_anything_is_400_or_items_never_an_exception(name: str) -> None:
    data = json.loads(raw(name))
    for path in _paths(data):
        for value in HOSTILE_VALUES:
            body = json.dumps(_replaced(data, path, value)).encode()
            try:
                items = meta.parse(request(body))
            except MalformedPayload:
                continue
            assert all(isinstance(item, ALLOWED) for item in items), (path, value, items)


# --- Sending: what goes on the wire ---------------------------------------------------------------------


def outgoing(channel: str = "whatsapp", recipient: str = "+15017122661", **fields: Any) -> Outgoing:
    return Outgoing(
        channel=channel, recipient=recipient, body=fields.pop("body", "Hello"), hub_message_id="msg_1", **fields
    )


def test_whatsapp_text_goes_to_the_number_s_digits_without_link_previews() -> None:
    [payload] = meta.whatsapp_payloads(outgoing(), "15017122661")

    assert payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15017122661",
        "type": "text",
        "text": {"body": "Hello", "preview_url": False},
    }


@pytest.mark.parametrize(
    ("url", "kind", "captioned"),
    [
        ("https://cdn.example.com/p/photo.JPG", "image", True),
        ("https://cdn.example.com/clip.mp4?sig=1", "video", True),
        ("https://cdn.example.com/invoice%2042.pdf", "document", True),
        ("https://cdn.example.com/download", "document", True),
        ("https://cdn.example.com/note.ogg", "audio", False),
    ],
)
def test_whatsapp_media_type_follows_the_extension_and_the_body_is_its_caption(
    url: str, kind: str, captioned: bool
) -> None:
    payloads = meta.whatsapp_payloads(outgoing(media_urls=(url,)), "15017122661")

    media = payloads[-1]
    assert media["type"] == kind and media[kind]["link"] == url
    if captioned:
        assert len(payloads) == 1 and media[kind]["caption"] == "Hello"
    else:  # audio takes no caption: the text goes first, as its own message
        assert [p["type"] for p in payloads] == ["text", "audio"] and "caption" not in media[kind]
    if kind == "document" and url.endswith(".pdf"):
        assert media["document"]["filename"] == "invoice 42.pdf"


def test_a_whatsapp_template_carries_its_language_and_body_parameters() -> None:
    message = outgoing(template="order_update", template_language="fr", template_parameters=("Ada", "#42"))

    [payload] = meta.whatsapp_payloads(message, "15017122661")

    assert payload["type"] == "template"
    assert payload["template"] == {
        "name": "order_update",
        "language": {"code": "fr"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#42"}]}
        ],
    }


def test_messenger_sends_text_then_each_attachment_and_tags_late_replies() -> None:
    message = outgoing("messenger", PSID, media_urls=("https://cdn.example.com/a.png", "https://cdn.example.com/b.pdf"))
    text, image, file = meta.page_payloads(message)

    assert text == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "Hello"}}
    assert image["message"] == {
        "attachment": {"type": "image", "payload": {"url": "https://cdn.example.com/a.png", "is_reusable": False}}
    }
    assert file["message"]["attachment"]["type"] == "file"

    [tagged] = meta.page_payloads(outgoing("messenger", PSID, message_tag="HUMAN_AGENT"))
    assert (tagged["messaging_type"], tagged["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


def test_instagram_sends_files_it_cannot_attach_as_links() -> None:
    payloads = meta.page_payloads(
        outgoing("instagram", "1914827532176842", body="", media_urls=("https://x.example/a.pdf",))
    )

    assert [p["message"] for p in payloads] == [{"text": "https://x.example/a.pdf"}]


def test_settings_a_send_needs_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings

    for name in ("META_ACCESS_TOKEN", "META_WHATSAPP_PHONE_NUMBER_ID", "META_PAGE_ID", "META_INSTAGRAM_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    settings.cache_clear()
    assert meta.missing_settings("whatsapp") == ["META_ACCESS_TOKEN", "META_WHATSAPP_PHONE_NUMBER_ID"]
    assert meta.missing_settings("messenger") == ["META_ACCESS_TOKEN", "META_PAGE_ID"]
    assert meta.missing_settings("instagram") == ["META_ACCESS_TOKEN", "META_INSTAGRAM_ACCOUNT_ID"]

    monkeypatch.setenv("META_ACCESS_TOKEN", "EAAG-token")
    monkeypatch.setenv("META_PAGE_ID", PAGE)
    settings.cache_clear()
    assert meta.missing_settings("messenger") == []
    assert meta.missing_settings("telegram") != []
