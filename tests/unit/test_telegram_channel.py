"""Telegram Bot API webhooks: the secret-token header, and every kind of Update parsed into hub items.

Sample updates are in events/telegram/, shaped as https://core.telegram.org/bots/api#update describes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.channels import telegram
from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import IdentityKind
from chalicelib.domain.messages import Channel, InboundMessage
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped

EVENTS = Path(__file__).parents[2] / "events" / "telegram"
SECRET = "s3cr3t_T0ken-for-webhooks"
ADA = 123456789


@pytest.fixture(autouse=True)
def telegram_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from chalicelib.config import settings

    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", SECRET)
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "AcmeHelpBot")
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN_PARAMETER", raising=False)
    settings.cache_clear()
    yield
    settings.cache_clear()


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def request(update: Any, headers: dict[str, str] | None = None) -> WebhookRequest:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    given = {"content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET}
    return WebhookRequest(method="POST", path="/webhooks/telegram", headers=headers or given, body=body)


def one(update: Any) -> Any:
    items = telegram.parse(request(update))
    assert len(items) == 1
    return items[0]


def message(update: Any) -> InboundMessage:
    item = one(update)
    assert isinstance(item, InboundMessage), item
    return item


def with_message(**fields: Any) -> dict[str, Any]:
    """The sample text message with some message fields replaced (None removes one)."""
    update = event("text_message.json")
    for key, value in fields.items():
        if value is None:
            update["message"].pop(key, None)
        else:
            update["message"][key] = value
    return update


# --- verify ------------------------------------------------------------------------------------------


def test_the_secret_token_header_set_with_setwebhook_is_accepted() -> None:
    telegram.verify(request(event("text_message.json")))


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {"x-telegram-bot-api-secret-token": ""},
        {"x-telegram-bot-api-secret-token": SECRET + "x"},
        {"x-telegram-bot-api-secret-token": SECRET[:-1]},
        {"x-telegram-bot-api-secret-token": SECRET.upper()},
        {"x-telegram-bot-api-secret-token": "sécret"},  # non-ASCII: unequal, not a crash
    ],
)
def test_a_missing_or_wrong_secret_token_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        telegram.verify(request(event("text_message.json"), headers))


def test_nothing_is_accepted_while_the_secret_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN")
    with pytest.raises(WebhookRejected, match="not configured"):
        telegram.verify(request(event("text_message.json")))
    # Not even a request whose header is empty, like the unset secret.
    with pytest.raises(WebhookRejected):
        telegram.verify(request(event("text_message.json"), {"x-telegram-bot-api-secret-token": ""}))


# --- messages ----------------------------------------------------------------------------------------


def test_a_text_message_from_a_private_chat() -> None:
    msg = message(event("text_message.json"))

    assert msg.provider == "telegram"
    assert msg.provider_message_id == "578923410"
    assert msg.dedupe_key == "telegram:578923410"
    assert msg.channel is Channel.TELEGRAM
    assert (msg.sender.kind, msg.sender.value) == (IdentityKind.TELEGRAM, str(ADA))
    assert msg.sender_address == str(ADA)
    assert msg.recipient_address == "@AcmeHelpBot"
    assert msg.body == "Hi, my order #42 has not arrived"
    assert msg.profile_name == "Ada Lovelace (@ada_l)"
    assert msg.media == []
    assert msg.verified_phone is None and msg.link_code is None


def test_the_recipient_is_named_even_without_a_configured_bot_username(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings

    monkeypatch.delenv("TELEGRAM_BOT_USERNAME")
    settings.cache_clear()
    assert message(event("text_message.json")).recipient_address == "telegram-bot"


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ({"first_name": "Ada"}, "Ada"),
        ({"first_name": "Ada", "last_name": "Lovelace"}, "Ada Lovelace"),
        ({"first_name": "Ada", "username": "ada_l"}, "Ada (@ada_l)"),
        ({"first_name": "", "username": "ada_l"}, "@ada_l"),
        ({"first_name": 42, "last_name": ["x"]}, None),
        ({"first_name": "  Ada \n  Byron  "}, "Ada Byron"),
    ],
)
def test_profile_name_from_first_last_and_username(user: dict[str, Any], name: str | None) -> None:
    update = event("text_message.json")
    update["message"]["from"] = {"id": ADA, "is_bot": False, **user}
    assert message(update).profile_name == name


def test_a_start_deep_link_carries_its_payload_as_the_link_code() -> None:
    msg = message(event("start_deep_link.json"))
    assert msg.link_code == "LINK-7KQ4MZ"
    assert msg.body == "/start LINK-7KQ4MZ"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("/start", None),
        ("/start ", None),
        ("/start LINK-7KQ4MZ", "LINK-7KQ4MZ"),
        ("/start@AcmeHelpBot LINK-7KQ4MZ", "LINK-7KQ4MZ"),
        ("/start promo_2025-spring", "promo_2025-spring"),  # any payload rides along; links pick codes
        ("/start has spaces in it", None),
        ("/start " + "A" * 65, None),  # payloads are at most 64 characters
        ("/started LINK-7KQ4MZ", None),
        ("hello /start LINK-7KQ4MZ", None),
    ],
)
def test_only_a_start_command_payload_is_a_link_code(text: str, code: str | None) -> None:
    msg = message(with_message(text=text))
    assert msg.link_code == code
    assert msg.body == text


def test_an_edit_is_a_new_message_that_says_which_message_it_edits() -> None:
    original = message(event("text_message.json"))
    edit = message(event("edited_message.json"))

    assert edit.provider_message_id == "578923412" != original.provider_message_id
    assert edit.body == "(edited message 4521) Hi, my order #43 has not arrived"
    assert edit.sender == original.sender


def test_an_edit_never_vouches_for_a_phone_number_or_carries_a_link_code() -> None:
    update = event("contact_own.json")
    update["edited_message"] = update.pop("message")
    edit = message(update)
    assert edit.verified_phone is None
    update = event("start_deep_link.json")
    update["edited_message"] = update.pop("message")
    assert message(update).link_code is None


def test_live_location_updates_are_skipped() -> None:
    item = one(event("live_location_edit.json"))
    assert isinstance(item, Skipped) and "live location" in item.reason


def test_a_photo_keeps_its_largest_size_as_a_file_id_and_the_caption_as_body() -> None:
    msg = message(event("photo_with_caption.json"))

    assert msg.body == "The box arrived like this"
    [media] = msg.media
    assert media.url is None  # Telegram gives no URL: the bytes need the bot token
    assert media.content_id == "AgACAgQAAxkBAAIRmWeHk1Yc3xZ0s9e5xQABVAABGFnNvQACWbsxG5ZLQVCxk8vYAQADAgADeQADNgQ"
    assert (media.content_type, media.size) == ("image/jpeg", 201533)


def test_the_largest_photo_wins_whatever_the_order_of_sizes() -> None:
    update = event("photo_with_caption.json")
    update["message"]["photo"].reverse()
    assert message(update).media[0].size == 201533


def test_a_document_keeps_name_type_and_size() -> None:
    msg = message(event("document.json"))
    [media] = msg.media
    assert msg.body == ""
    assert media.filename == "invoice-2025-001.pdf"
    assert media.content_type == "application/pdf"
    assert media.size == 48213
    assert media.content_id == "BQACAgQAAxkBAAIRmmeHk3o4cJ1dZ7m0UqG3fQ8y0bY1AAKPFwACmUtBUMQ2F5x0y2hBNgQ"


def test_a_voice_note_is_ogg_audio() -> None:
    [media] = message(event("voice.json")).media
    assert (media.content_type, media.size) == ("audio/ogg", 9311)


def test_an_animation_also_given_as_a_document_is_one_file() -> None:
    animation = {"file_id": "CgACAgQAAxkBAAIRnWeH", "file_unique_id": "AgADsxcAAplLQVA", "mime_type": "video/mp4"}
    update = with_message(text=None, animation=animation, document={**animation, "file_name": "funny.mp4"})
    [media] = message(update).media
    assert media.content_type == "video/mp4"


@pytest.mark.parametrize(
    ("flags", "content_type"),
    [({}, "image/webp"), ({"is_animated": True}, "application/x-tgsticker"), ({"is_video": True}, "video/webm")],
)
def test_a_sticker_shows_its_emoji(flags: dict[str, bool], content_type: str) -> None:
    sticker = {"file_id": "CAACAgIAAxkBAAIRnmeH", "file_unique_id": "AgADXwADwZxgDA", "emoji": "👍", **flags}
    msg = message(with_message(text=None, sticker=sticker))
    assert msg.body == "[sticker 👍]"
    assert msg.media[0].content_type == content_type


def test_the_users_own_contact_is_a_verified_phone_number() -> None:
    msg = message(event("contact_own.json"))
    # Telegram sends the account's number without "+" from some apps: it is international.
    assert msg.verified_phone == "+15017122661"
    assert msg.body == "Contact: Ada Lovelace, 15017122661"


def test_someone_elses_contact_is_only_text() -> None:
    msg = message(event("contact_other.json"))
    assert msg.verified_phone is None
    assert msg.body == "Contact: Charles Babbage, +44 7700 900123"


@pytest.mark.parametrize(
    ("contact", "verified"),
    [
        ({"phone_number": "+1 (501) 712-2661", "first_name": "Ada", "user_id": ADA}, "+15017122661"),
        ({"phone_number": "+15017122661", "first_name": "Ada"}, None),  # no user_id: not a Telegram account
        ({"phone_number": "+15017122661", "first_name": "Ada", "user_id": str(ADA)}, None),
        ({"phone_number": "+15017122661", "first_name": "Ada", "user_id": True}, None),
        ({"phone_number": "+15017122661", "first_name": "Ada", "user_id": ADA + 1}, None),
        ({"phone_number": "(501) 712-2661", "first_name": "Ada", "user_id": ADA}, None),  # national: ambiguous
        ({"phone_number": "not a number", "first_name": "Ada", "user_id": ADA}, None),
        ({"phone_number": 15017122661, "first_name": "Ada", "user_id": ADA}, None),
    ],
)
def test_only_a_users_own_well_formed_number_is_verified(contact: dict[str, Any], verified: str | None) -> None:
    msg = message(with_message(text=None, contact=contact))
    assert msg.verified_phone == verified
    assert msg.body.startswith("Contact: Ada")


def test_a_location_and_a_venue() -> None:
    assert message(event("location.json")).body == (
        "Location: 51.507351,-0.127758\nhttps://maps.google.com/?q=51.507351,-0.127758"
    )
    assert message(event("venue.json")).body.startswith(
        "Location: British Museum, Great Russell St, London WC1B 3DG: 51.519413,-0.126957\n"
    )


def test_a_location_with_impossible_coordinates_is_not_shown() -> None:
    item = one(with_message(text=None, location={"latitude": 91, "longitude": 0}))
    assert isinstance(item, Skipped)


def test_an_over_long_text_is_cut() -> None:
    msg = message(with_message(text="x" * 100_000))
    assert len(msg.body) == telegram.MAX_INBOUND_TEXT_CHARS and msg.body.endswith("…")


# --- what the hub does not file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("group_message.json", "supergroup chat"),
        ("channel_post.json", "channel posts"),
    ],
)
def test_groups_and_channels_are_skipped(name: str, reason: str) -> None:
    item = one(event(name))
    assert isinstance(item, Skipped) and reason in item.reason


def test_a_tap_on_an_inline_button_is_the_customers_answer() -> None:
    # A survey's rating button (callback_data "csat:5") arrives as a callback_query
    update = event("callback_query.json")
    update["callback_query"]["data"] = "csat:5"
    msg = message(update)
    assert msg.body == "csat:5" and msg.sender.value == "123456789"
    assert msg.provider_message_id == "578923422", "the update id dedupes Telegram's retries"


def test_a_callback_without_data_or_from_a_bot_is_skipped() -> None:
    update = event("callback_query.json")
    del update["callback_query"]["data"]
    assert "without data" in one(update).reason
    update = event("callback_query.json")
    update["callback_query"]["from"]["is_bot"] = True
    assert isinstance(one(update), Skipped)


@pytest.mark.parametrize("chat_type", ["group", "supergroup", "channel", None, 7])
def test_any_chat_other_than_private_is_skipped(chat_type: Any) -> None:
    update = event("text_message.json")
    update["message"]["chat"]["type"] = chat_type
    assert isinstance(one(update), Skipped)


def test_messages_from_bots_and_without_a_sender_are_skipped() -> None:
    update = event("text_message.json")
    update["message"]["from"]["is_bot"] = True
    assert "bot" in one(update).reason
    assert isinstance(one(with_message(**{"from": None})), Skipped)


@pytest.mark.parametrize(
    "kind",
    [
        "inline_query",
        "chosen_inline_result",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "chat_member",
        "chat_join_request",
        "message_reaction",
        "message_reaction_count",
        "chat_boost",
        "removed_chat_boost",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "purchased_paid_media",
        "edited_channel_post",
        "a_type_telegram_adds_next_year",
    ],
)
def test_every_other_update_type_is_skipped(kind: str) -> None:
    item = one({"update_id": 1, kind: {"id": "x"}})
    assert isinstance(item, Skipped) and item.kind == f"telegram:{kind}"


def test_an_update_with_nothing_in_it_is_skipped() -> None:
    assert isinstance(one({"update_id": 1}), Skipped)


@pytest.mark.parametrize(
    "content",
    [
        {"pinned_message": {"message_id": 1}},
        {"dice": {"emoji": "🎲", "value": 4}},
        {"write_access_allowed": {"from_request": True}},
        {},
    ],
)
def test_service_messages_and_unsupported_content_are_skipped(content: dict[str, Any]) -> None:
    update = with_message(text=None)
    update["message"].update(content)
    assert isinstance(one(update), Skipped)


# --- blocking and unblocking -------------------------------------------------------------------------


def test_blocking_the_bot_opts_the_customer_out() -> None:
    change = one(event("my_chat_member_kicked.json"))
    assert isinstance(change, ConsentChange)
    assert change.opted_out is True
    assert change.channel is Channel.TELEGRAM
    assert change.sender.key == f"telegram#{ADA}"
    assert change.occurred_at == datetime.fromtimestamp(1736946000, UTC)


def test_unblocking_the_bot_opts_the_customer_back_in() -> None:
    change = one(event("my_chat_member_member.json"))
    assert isinstance(change, ConsentChange) and change.opted_out is False


def test_other_membership_changes_are_skipped() -> None:
    update = event("my_chat_member_member.json")
    update["my_chat_member"]["old_chat_member"]["status"] = "left"
    assert isinstance(one(update), Skipped)
    group = event("my_chat_member_kicked.json")
    group["my_chat_member"]["chat"] = {"id": -100123, "title": "Acme", "type": "supergroup"}
    assert isinstance(one(group), Skipped)


def test_a_membership_change_with_an_odd_date_still_counts_now() -> None:
    update = event("my_chat_member_kicked.json")
    update["my_chat_member"]["date"] = "yesterday"
    change = one(update)
    assert isinstance(change, ConsentChange) and change.occurred_at.year >= 2025


# --- hostile shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"update"',
        b'{"update_id": NaN}',
        b"[" * 100_000,
        b'{"update_id": 1' + b"0" * 5000 + b"}",  # longer than Python reads as an int
    ],
)
def test_bodies_that_are_not_an_update_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        telegram.parse(request(body))


@pytest.mark.parametrize(
    "update_id",
    ["missing", None, "578923410", 1.5, 1e3, True, -1, 2**53, 2**64, 10**400, [1], {"id": 1}],
)
def test_an_update_id_that_is_missing_not_an_integer_or_huge_is_malformed(update_id: Any) -> None:
    update = event("text_message.json")
    if update_id == "missing":
        del update["update_id"]
    else:
        update["update_id"] = update_id
    with pytest.raises(MalformedPayload, match="update_id"):
        telegram.parse(request(update))


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("message",), [], "'message' must be an object"),
        (("message",), "hello", "'message' must be an object"),
        (("message",), None, "'message' must be an object"),
        (("message", "text"), 42, "text' must be a string"),
        (("message", "text"), ["hi"], "text' must be a string"),
        (("message", "caption"), {"x": 1}, "caption' must be a string"),
        (("message", "chat"), "private", "chat' must be an object"),
        (("message", "from"), 123456789, "from' must be an object"),
        (("message", "from", "id"), "123456789", "from.id' must be an integer"),
        (("message", "from", "id"), 1.5, "from.id' must be an integer"),
        (("message", "from", "id"), True, "from.id' must be an integer"),
        (("message", "from", "id"), 0, "from.id' is out of range"),
        (("message", "from", "id"), 2**80, "from.id' is out of range"),
        (("message", "message_id"), None, "message_id' must be an integer"),
        (("message", "message_id"), "4521", "message_id' must be an integer"),
        (("message", "photo"), {"file_id": "x"}, "photo' must be a list"),
        (("message", "photo"), [], "photo' must be a list"),
        (("message", "photo"), ["AgAC"], "photo[]' must be an object"),
        (("message", "photo"), [{"width": 1}], "photo.file_id' must be a non-empty string"),
        (("message", "document"), "BQAC", "document' must be an object"),
        (("message", "document"), {"file_id": 7}, "document.file_id' must be a non-empty string"),
        (("message", "voice"), {"file_id": "x" * 600}, "voice.file_id' must be a non-empty string"),
        (("message", "contact"), "+15017122661", "contact' must be an object"),
        (("edited_message",), 7, "'edited_message' must be an object"),
        (("my_chat_member",), [], "'my_chat_member' must be an object"),
    ],
)
def test_wrong_shapes_are_malformed_with_a_reason(path: tuple[str, ...], value: Any, complaint: str) -> None:
    update = event("text_message.json")
    if path[0] != "message":
        update[path[0]] = update.pop("message")
    target = update
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MalformedPayload) as raised:
        telegram.parse(request(update))
    assert complaint in str(raised.value)


def test_my_chat_member_with_missing_parts_is_malformed() -> None:
    for part in ("chat", "from", "new_chat_member"):
        update = event("my_chat_member_kicked.json")
        del update["my_chat_member"][part]
        with pytest.raises(MalformedPayload, match=part):
            telegram.parse(request(update))


def test_odd_optional_fields_are_ignored_rather_than_refused() -> None:
    update = event("document.json")
    update["message"]["document"].update({"file_size": "48 KB", "file_name": ["x"], "mime_type": 3})
    update["message"]["from"]["language_code"] = {"odd": True}
    update["message"]["date"] = "today"
    update["message"]["unknown_future_field"] = {"a": [1, 2, 3]}
    [media] = message(update).media
    assert (media.size, media.filename, media.content_type) == (None, None, None)


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every place in a sample update, each replaced by a few values of the wrong type."""
    for replacement in (None, "", 0, -1, True, 2**70, 1.5, [], {}, "x" * 3000):
        if path:
            yield path, replacement
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _mutations(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from _mutations(item, (*path, index))


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_no_wrong_value_anywhere_escapes_as_anything_but_malformed(name: str) -> None:
    original = event(name)
    checked = 0
    for path, replacement in _mutations(original):
        update = copy.deepcopy(original)
        target = update
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = replacement
        try:
            items = telegram.parse(request(update))
        except MalformedPayload:
            pass
        else:
            assert len(items) == 1
        checked += 1
    assert checked > 50


# --- the rest of the contract ------------------------------------------------------------------------


def test_the_acknowledgement_is_a_plain_ok() -> None:
    assert telegram.acknowledgement(BatchOutcome()) == "ok"
    assert telegram.ACKNOWLEDGEMENT_TYPE == "text/plain; charset=utf-8"


def test_sending_needs_the_bot_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN_PARAMETER", raising=False)
    assert telegram.missing_settings("telegram") == ["TELEGRAM_BOT_TOKEN"]
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:ABC-DEF")
    assert telegram.missing_settings("telegram") == []


@pytest.mark.parametrize(
    ("recipient", "chat_id"),
    [("123456789", 123456789), (" 123456789 ", 123456789), ("-1001234567890", -1001234567890), ("@acme", "@acme")],
)
def test_chat_ids_go_out_as_integers_when_they_are(recipient: str, chat_id: int | str) -> None:
    assert telegram.chat_id_of(recipient) == chat_id


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("15017122661", "+15017122661"),
        ("+15017122661", "+15017122661"),
        ("447911123456", "+447911123456"),
        ("+44 7911 123456", "+447911123456"),
        ("5017122661", None),  # a US number without its country code would read as Belize: refused
        ("(501) 712-2661", None),
        ("15550000000", None),  # not a valid number
        ("12", None),
    ],
)
def test_own_numbers_are_read_as_international_and_only_when_unambiguous(raw: str, number: str | None) -> None:
    assert telegram.own_number(raw) == number


@pytest.mark.parametrize(
    ("body", "url", "calls"),
    [
        ("hi", None, [("sendMessage", {"chat_id": 1, "text": "hi"})]),
        (
            "look",
            "https://x.example/a.JPG?v=2",
            [("sendPhoto", {"chat_id": 1, "photo": "https://x.example/a.JPG?v=2", "caption": "look"})],
        ),
        ("", "https://x.example/a.png", [("sendPhoto", {"chat_id": 1, "photo": "https://x.example/a.png"})]),
        (
            "doc",
            "https://x.example/invoice.pdf",
            [("sendDocument", {"chat_id": 1, "document": "https://x.example/invoice.pdf", "caption": "doc"})],
        ),
        (
            "gif",
            "https://x.example/fun.gif",
            [("sendDocument", {"chat_id": 1, "document": "https://x.example/fun.gif", "caption": "gif"})],
        ),
        (
            "read",
            "https://x.example/terms.docx",
            [("sendMessage", {"chat_id": 1, "text": "read\nhttps://x.example/terms.docx"})],
        ),
        ("", "https://x.example/terms", [("sendMessage", {"chat_id": 1, "text": "https://x.example/terms"})]),
        (
            "x" * 1025,
            "https://x.example/a.png",
            [
                ("sendMessage", {"chat_id": 1, "text": "x" * 1025}),
                ("sendPhoto", {"chat_id": 1, "photo": "https://x.example/a.png"}),
            ],
        ),
        (
            "x" * 4090,
            "https://x.example/terms.docx",
            [
                ("sendMessage", {"chat_id": 1, "text": "x" * 4090}),
                ("sendMessage", {"chat_id": 1, "text": "https://x.example/terms.docx"}),
            ],
        ),
    ],
)
def test_the_bot_api_calls_for_a_reply(body: str, url: str | None, calls: list[tuple[str, dict[str, Any]]]) -> None:
    assert telegram.requests_for(1, body, url) == calls
