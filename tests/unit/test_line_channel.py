"""LINE webhooks verified exactly as LINE signs them and parsed into hub items; what send() builds.

The sample webhooks in events/line/ follow the examples of the Messaging API reference
(https://developers.line.biz/en/reference/messaging-api/#webhook-event-objects), with the user ids
the docs shorten ("U4af4980629...") written out in full.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.channels import line
from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import IdentityKind
from chalicelib.domain.messages import Channel, InboundMessage
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped

EVENTS = Path(__file__).parents[2] / "events" / "line"
SECRET = "8c570fa6dd201bb328f1c1eac23a96d8"
BOT = "Ub0d6b2a3c4d5e6f708192a3b4c5d6e7f"
CUSTOMER = "U4af4980629a5f1c0b7e9d2c3a8b6f011"


@pytest.fixture(autouse=True)
def channel_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINE_CHANNEL_SECRET", SECRET)
    monkeypatch.delenv("LINE_CHANNEL_SECRET_PARAMETER", raising=False)


def raw(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    """What LINE puts in x-line-signature: base64 of the HMAC-SHA256 of the body bytes."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook(body: bytes, signature: str | None = None) -> WebhookRequest:
    headers = {"content-type": "application/json; charset=utf-8"}
    headers["x-line-signature"] = sign(body) if signature is None else signature
    return WebhookRequest(method="POST", path="/webhooks/line", headers=headers, body=body)


def parsed(name: str) -> list[Any]:
    request = webhook(raw(name))
    line.verify(request)
    return line.parse(request)


def only(name: str) -> Any:
    [item] = parsed(name)
    return item


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


# --- Signature ----------------------------------------------------------------------------------------


def test_the_signature_is_over_the_raw_utf8_bytes_of_a_japanese_message() -> None:
    body = raw("text_message.json")
    assert "こんにちは".encode() in body  # the file holds the UTF-8 text, not \\u escapes

    line.verify(webhook(body))  # signed as LINE signs: accepted

    # The same JSON re-serialised with \\u escapes is a different byte string: the signature of
    # the original bytes no longer matches, so nothing re-encodes the body before checking it.
    reencoded = json.dumps(json.loads(body), ensure_ascii=True).encode()
    assert json.loads(reencoded) == json.loads(body)
    with pytest.raises(WebhookRejected, match="does not match"):
        line.verify(webhook(reencoded, signature=sign(body)))


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("", "missing"),
        ("   ", "missing"),
        (sign(b"{}"), "does not match"),  # a real signature of another body
        (sign(raw("text_message.json"), "another-channel-secret"), "does not match"),
        ("not base64 at all", "does not match"),
        ("署名", "does not match"),
    ],
)
def test_a_forged_or_missing_signature_is_refused(signature: str, reason: str) -> None:
    request = webhook(raw("text_message.json"), signature=signature)
    with pytest.raises(WebhookRejected, match=reason):
        line.verify(request)


def test_without_a_channel_secret_every_request_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINE_CHANNEL_SECRET")
    body = raw("text_message.json")
    with pytest.raises(WebhookRejected, match="LINE_CHANNEL_SECRET"):
        line.verify(webhook(body, signature=sign(body, "")))


# --- The connectivity check and the message events ------------------------------------------------------


def test_an_empty_events_list_is_the_consoles_connectivity_check() -> None:
    assert parsed("connectivity_check.json") == []
    assert line.acknowledgement(BatchOutcome()) == "OK"
    assert line.ACKNOWLEDGEMENT_TYPE == "text/plain; charset=utf-8"


def test_a_text_message_from_a_user() -> None:
    message = only("text_message.json")

    assert isinstance(message, InboundMessage)
    assert message.provider == "line" and message.channel is Channel.LINE
    assert message.provider_message_id == "01FZ74A0TDDPYRVKNK77XKC3ZR"  # the webhookEventId
    assert message.dedupe_key == "line:01FZ74A0TDDPYRVKNK77XKC3ZR"
    assert message.sender.kind is IdentityKind.LINE and message.sender.value == CUSTOMER
    assert message.sender_address == CUSTOMER
    assert message.recipient_address == BOT and message.provider_account == BOT
    assert message.body == "こんにちは！注文した商品がまだ届いていません (love)"
    assert message.reply_token == "757913772c4646b784d4b7ce46d12671"
    assert message.media == []


def test_a_redelivered_event_keeps_its_id_so_it_is_stored_once() -> None:
    first = only("text_message.json")
    again = only("text_message_redelivered.json")

    assert again.dedupe_key == first.dedupe_key
    assert again.body == first.body
    # The event happened years ago: LINE refuses a redelivered token 20 minutes after the event.
    assert again.reply_token is None


def test_a_recent_redelivered_event_keeps_its_reply_token() -> None:
    payload = json.loads(raw("text_message_redelivered.json"))
    payload["events"][0]["timestamp"] = int((datetime.now(UTC) - timedelta(minutes=3)).timestamp() * 1000)

    [message] = line.parse(webhook(body_of(payload)))

    assert message.reply_token == "757913772c4646b784d4b7ce46d12671"


def test_in_standby_mode_or_with_a_dummy_token_there_is_no_reply_token() -> None:
    payload = json.loads(raw("text_message.json"))
    standby = copy.deepcopy(payload)
    standby["events"][0]["mode"] = "standby"
    dummy = copy.deepcopy(payload)
    dummy["events"][0]["replyToken"] = "0" * 32

    assert line.parse(webhook(body_of(standby)))[0].reply_token is None
    assert line.parse(webhook(body_of(dummy)))[0].reply_token is None


def test_an_image_sent_from_the_app_is_fetched_by_message_id() -> None:
    message = only("image_message.json")

    assert message.body == "[image]"
    [media] = message.media
    assert media.url is None  # behind the channel access token: no URL to store
    assert media.content_id == "354718705033693859"
    assert media.content_type == "image/*"
    assert message.reply_token == "7840b71058e24a5d91f9b5726c7512c9"


def test_a_video_from_an_external_provider_keeps_its_url() -> None:
    [media] = only("video_external.json").media

    assert media.url == "https://example.com/original.mp4"
    assert media.content_type == "video/*"
    assert media.content_id is None


def test_audio_and_file_messages() -> None:
    audio = only("audio_message.json")
    file = only("file_message.json")

    assert audio.body == "[audio]" and audio.media[0].content_id == "325710"
    assert file.body == "[file] file.txt"
    [media] = file.media
    assert (media.filename, media.size, media.content_id, media.url) == ("file.txt", 2138, "325711", None)


def test_a_location_becomes_readable_text() -> None:
    body = only("location_message.json").body

    assert body.splitlines()[:4] == [
        "[location]",
        "my location",
        "1-3 Kioicho, Chiyoda-ku, Tokyo, 102-8282 Japan",
        "35.67966,139.73669",
    ]
    assert "35.67966,139.73669" in body.splitlines()[4]


def test_stickers_are_described_by_their_text_or_keywords() -> None:
    assert only("sticker_animated.json").body == "[sticker: cony, sally, Staring, hi, whatsup]"
    assert only("sticker_message_sticker.json").body == "[sticker] Let's\nhang out\nthis weekend!"


def test_a_postback_is_a_message_with_its_data() -> None:
    datetime_pick = only("postback_datetime.json")
    richmenu = only("postback_richmenu.json")

    assert isinstance(datetime_pick, InboundMessage)
    assert datetime_pick.body == "[postback] storeId=12345 (datetime: 2017-12-25T01:00)"
    assert datetime_pick.provider_message_id == "01FZ74A0TDDPYRVKNK77XKC402"
    assert datetime_pick.reply_token == "b60d432864f44d079f6d8efe86cf404b"
    assert richmenu.body.startswith("[postback] richmenu-changed-to-b (newRichMenuAliasId: richmenu-alias-b")


# --- Follow, unfollow and the events the hub does not use ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "opted_out", "at"),
    [
        ("follow.json", False, 1705891467176),
        ("follow_unblocked.json", False, 1705891567176),
        ("unfollow.json", True, 1705891517176),
    ],
)
def test_follow_and_unfollow_change_consent(name: str, opted_out: bool, at: int) -> None:
    change = only(name)

    assert isinstance(change, ConsentChange)
    assert change.channel is Channel.LINE
    assert change.sender.kind is IdentityKind.LINE and change.sender.value == "U3d3edab4f36c6292e6d8a8131f141b8b"
    assert change.opted_out is opted_out
    assert change.occurred_at == datetime.fromtimestamp(at / 1000, UTC)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("text_group_mention.json", "line:message"),
        ("text_room.json", "line:message"),
        ("unsend.json", "line:unsend"),
        ("join.json", "line:join"),
        ("leave.json", "line:leave"),
        ("member_joined.json", "line:memberJoined"),
        ("member_left.json", "line:memberLeft"),
        ("video_play_complete.json", "line:videoPlayComplete"),
        ("beacon.json", "line:beacon"),
        ("account_link.json", "line:accountLink"),
        ("membership_joined.json", "line:membership"),
    ],
)
def test_events_the_hub_does_not_use_are_skipped(name: str, kind: str) -> None:
    item = only(name)

    assert isinstance(item, Skipped) and item.kind == kind


def test_group_and_room_messages_are_skipped_as_not_one_to_one() -> None:
    assert "group chat" in only("text_group_mention.json").reason
    assert "multi-person chat" in only("text_room.json").reason


def test_one_webhook_may_carry_events_of_several_users() -> None:
    message, follow, unfollow = parsed("mixed_batch.json")

    assert isinstance(message, InboundMessage) and message.sender.value == "U91eeaf62d901234567890abcdef01234"
    assert isinstance(follow, ConsentChange) and not follow.opted_out
    assert follow.sender.value == "Ufc729a925b3abef3c4d5e6f708192a3b"
    assert isinstance(unfollow, ConsentChange) and unfollow.opted_out


# --- Hostile input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"not json", "not valid JSON"),
        (b'{"events": [', "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"events"', "JSON object"),
        (b"{}", "'events' list"),
        (b'{"events": {}}', "'events' list"),
        (b'{"events": null}', "'events' list"),
        (b'{"destination": "U1", "events": "[]"}', "'events' list"),
        (b'{"events": [], "x": NaN}', "not valid JSON"),
        (b'{"events": [{"timestamp": ' + b"9" * 5000 + b"}]}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_a_body_that_is_not_a_webhook_is_malformed(body: bytes, fragment: str) -> None:
    request = webhook(body)
    line.verify(request)  # signed: authentic, but unusable
    with pytest.raises(MalformedPayload, match=fragment):
        line.parse(request)


def event(**overrides: Any) -> dict[str, Any]:
    base = json.loads(raw("text_message.json"))["events"][0]
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "odd",
    [
        1,
        "message",
        None,
        [],
        {},
        {"type": None},
        {"type": ["message"]},
        {"type": "x" * 10_000},
        {"type": "things"},
        {"type": "delivery"},
        event(source=None),
        event(source="user"),
        event(source={"type": "user"}),
        event(source={"type": "user", "userId": 12345}),
        event(source={"type": "user", "userId": "U" + "f" * 10_000}),
        event(source={"type": "user", "userId": "not-a-line-user"}),
        event(source={"type": "bot", "userId": CUSTOMER}),
        event(webhookEventId=None),
        event(webhookEventId=""),
        event(webhookEventId=123),
        event(webhookEventId="E" * 5000),
        event(webhookEventId="bad id/with spaces"),
        event(message=None),
        event(message="hello"),
        event(message={"type": "text"}),
        event(message={"type": "text", "id": "1", "text": 42}),
        event(message={"type": "text", "id": "1", "text": ""}),
        event(message={"type": "hologram", "id": "1"}),
        event(message={"type": None}),
        event(type="postback", postback=None),
        event(type="postback", postback={"data": 7}),
        event(type="postback", postback={}),
    ],
)
def test_an_odd_event_is_skipped_and_never_breaks_the_batch(odd: Any) -> None:
    payload = {"destination": BOT, "events": [odd, event()]}

    items = line.parse(webhook(body_of(payload)))

    assert len(items) == 2
    assert isinstance(items[0], Skipped)
    assert isinstance(items[1], InboundMessage)  # the good event after it is still filed


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"timestamp": "yesterday"}, lambda m: m.body.startswith("こんにちは")),
        ({"timestamp": 10**30}, lambda m: m.reply_token is not None),
        ({"timestamp": True}, lambda m: m.reply_token is not None),
        ({"replyToken": 42}, lambda m: m.reply_token is None),
        ({"replyToken": "r" * 5000}, lambda m: m.reply_token is None),
        ({"deliveryContext": "yes"}, lambda m: m.reply_token is not None),
        ({"message": {"type": "text", "id": "1", "text": "x" * 100_000}}, lambda m: len(m.body) == 20_000),
        (
            {"message": {"type": "location", "id": "1", "latitude": True, "longitude": "east"}},
            lambda m: m.body == "[location]",
        ),
        (
            {"message": {"type": "location", "id": "1", "latitude": 95, "longitude": 10}},
            lambda m: m.body == "[location]",
        ),
        (
            {"message": {"type": "file", "id": "1", "fileName": ["a"], "fileSize": -5}},
            lambda m: m.media[0].size is None,
        ),
        ({"message": {"type": "file", "id": "1", "fileSize": True}}, lambda m: m.media[0].size is None),
        (
            {"message": {"type": "image", "id": "../../etc", "contentProvider": "line"}},
            lambda m: m.media[0].content_id is None,
        ),
        (
            {
                "message": {
                    "type": "image",
                    "id": "9",
                    "contentProvider": {"type": "external", "originalContentUrl": "javascript:alert(1)"},
                }
            },
            lambda m: m.media[0].url is None and m.media[0].content_id == "9",
        ),
        ({"message": {"type": "sticker", "id": "1", "keywords": "hi"}}, lambda m: m.body == "[sticker]"),
        ({"message": {"type": "sticker", "id": "1", "keywords": [1, None, ""]}}, lambda m: m.body == "[sticker]"),
    ],
)
def test_odd_fields_of_a_usable_event_are_tolerated(overrides: dict[str, Any], check: Any) -> None:
    payload = {"destination": "not-a-bot-id", "events": [event(**overrides)]}

    [message] = line.parse(webhook(body_of(payload)))

    assert isinstance(message, InboundMessage)
    assert message.recipient_address == ""  # an odd destination is not repeated
    assert check(message)


def test_random_mutations_of_every_sample_never_raise_anything_but_malformed_payload() -> None:
    rng = random.Random(20240611)
    odd_values: list[Any] = [None, True, 0, -1, 1.5, 10**40, "", "x" * 3000, "\u0000", [], {}, [1, 2], {"a": None}]
    samples = [json.loads(path.read_bytes()) for path in sorted(EVENTS.glob("*.json"))]

    def mutate(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict):
            mutated = {key: mutate(item, depth + 1) for key, item in value.items()}
            if mutated and rng.random() < 0.3:
                key = rng.choice(list(mutated))
                mutated[key] = rng.choice(odd_values) if rng.random() < 0.7 else None
                if rng.random() < 0.2:
                    del mutated[key]
            return mutated
        if isinstance(value, list):
            return [mutate(item, depth + 1) for item in value]
        return rng.choice(odd_values) if rng.random() < 0.05 else value

    for _ in range(400):
        payload = mutate(rng.choice(samples))
        try:
            items = line.parse(webhook(body_of(payload)))
        except MalformedPayload:
            continue
        assert all(isinstance(item, InboundMessage | ConsentChange | Skipped) for item in items)


# --- What send() builds ---------------------------------------------------------------------------------


def test_missing_settings_name_the_channel_access_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINE_CHANNEL_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("LINE_CHANNEL_ACCESS_TOKEN_PARAMETER", raising=False)
    assert line.missing_settings("line") == ["LINE_CHANNEL_ACCESS_TOKEN"]
    monkeypatch.setenv("LINE_CHANNEL_ACCESS_TOKEN", "token")
    assert line.missing_settings("line") == []


def test_text_is_split_by_utf16_code_units_as_line_counts_them() -> None:
    apples = "🍎" * 3000  # 3,000 characters, 6,000 UTF-16 code units: too long for one text message

    chunks = line.text_chunks(apples)

    assert "".join(chunks) == apples
    assert [line.utf16_units(chunk) for chunk in chunks] == [5000, 1000]
    assert line.text_chunks("短い") == ["短い"] and line.text_chunks("  \n ") == []


def test_long_text_is_cut_at_a_line_break_or_space_when_one_is_near() -> None:
    text = ("word " * 1200).strip()  # 5,999 characters

    first, second = line.text_chunks(text)

    assert first.endswith(" ") and len(first) <= 5000
    assert first + second == text


def test_an_https_jpeg_or_png_goes_as_an_image_and_other_media_as_links() -> None:
    messages = line.message_objects(
        "Here you go",
        (
            "https://cdn.example.com/receipt.JPG?sig=1",
            "http://cdn.example.com/plain-http.png",
            "https://cdn.example.com/manual.pdf",
        ),
    )

    assert messages == [
        {"type": "text", "text": "Here you go"},
        {
            "type": "image",
            "originalContentUrl": "https://cdn.example.com/receipt.JPG?sig=1",
            "previewImageUrl": "https://cdn.example.com/receipt.JPG?sig=1",
        },
        {"type": "text", "text": "http://cdn.example.com/plain-http.png"},
        {"type": "text", "text": "https://cdn.example.com/manual.pdf"},
    ]
    assert line.message_objects("", ("https://cdn.example.com/a.png",))[0]["type"] == "image"


def test_the_push_retry_key_is_a_uuid_fixed_by_the_hub_message_id() -> None:
    key = line.retry_key("msg_01J0ABCDEF")

    assert str(uuid.UUID(key)) == key  # LINE wants a hexadecimal UUID
    assert line.retry_key("msg_01J0ABCDEF") == key
    assert line.retry_key("msg_01J0ABCDEG") != key
