"""Telegram Bot API: the bot's webhook, and messages to the users who talk to it.

Webhook (https://core.telegram.org/bots/api#setwebhook, #update)
    Telegram POSTs one `Update` per request as JSON to the URL given to `setWebhook`. With the
    `secret_token` given there, every request carries it in `X-Telegram-Bot-Api-Secret-Token`; that
    header is the only proof a request comes from Telegram, so it is compared (in constant time) with
    TELEGRAM_SECRET_TOKEN before the body is read, and nothing is accepted while the secret is unset.

    An Update holds `update_id` and at most one of `message`, `edited_message`, `channel_post`,
    `callback_query`, `my_chat_member`, ... . Telegram redelivers an update it could not deliver
    (any non-2xx answer) with the same `update_id`, so `str(update_id)` is the message's provider
    id and the dedupe key.

    * `message` in a private chat: text, a caption, photos, files (document, audio, video, voice,
      video note, animation, sticker), a shared contact, a location or venue. Telegram gives files
      as `file_id`s, not URLs: the bytes are only reachable with the bot token (`getFile`, then a
      download URL that embeds the token and expires after an hour), so no URL is stored:
      `Media(url=None, content_id=<file_id>)` plus the type, name and size Telegram reports (a
      photo comes in several sizes; the largest is kept). Resolve a file later with
      `getFile(file_id)` through a holder of the bot token.
    * `/start <payload>` is what a deep link `t.me/<bot>?start=<payload>` makes the user's app send
      on its own: the payload rides in `link_code`, so a handoff link `LINK-XXXXXX` is redeemed; the
      body stays "/start ..." (it is what the customer's app showed them sending).
    * A shared contact (`message.contact`) is a verified phone number only when the user shared
      their own: Telegram fills `contact.user_id` with the Telegram account that owns the number, so
      `contact.user_id == from.id` proves the sender holds that number (that is how the "share my
      phone number" button works). Then `verified_phone` is set and ingest joins the sender to the
      phone's customer (services/verified_contacts.py). Anyone else's contact is only text.
    * `edited_message` gets a new `update_id`, so it is stored as a new message whose body starts
      "(edited message <id>) ": the original stays as it was (the thread is an append-only record of
      what the customer said), and the per-chat message id Telegram gave the original is kept in the
      body, the one field every consumer shows, since no stored field holds provider references;
      it is what the Bot API needs to quote or react to that message. Live-location updates (a
      stream of location edits) are skipped.
    * `my_chat_member` in a private chat with the bot's new status `kicked` means the user blocked
      the bot: the customer opts out of Telegram; `member` after `kicked` (unblocked) opts back in.
    * Group, supergroup and channel chats are skipped: the hub keeps one thread per customer and an
      agent's answer to a group would reach every member of it, so a group is not a customer.
      Messages from bots are skipped too (another bot is never a customer).
    * `callback_query` (a tap on one of the hub's inline buttons: a survey rating) is a message
      whose body is the button's `callback_data`. The query's `id` rides as the message's reply
      token: Telegram's app shows a spinner on the button until the bot calls
      `answerCallbackQuery`, which it accepts for a few seconds only, once. The hub's next
      Telegram send to that customer within `CALLBACK_ANSWER_TTL` (the survey's thanks) answers it
      first; the outbound path claims the token so it is answered once (see "Sending").
    * Everything else (inline queries, payments, polls, reactions, chat boosts, Business
      connections, unknown types) is skipped.

    The hub answers 200 "ok": Telegram only looks at the status code.

Sending (https://core.telegram.org/bots/api#sendmessage, #sendphoto, #senddocument)
    `POST {TELEGRAM_API_BASE_URL}/bot<TELEGRAM_BOT_TOKEN>/<method>` with a JSON body. In a private
    chat the chat id is the user id. Text goes by `sendMessage` (1-4096 characters); one media URL by
    `sendPhoto` (JPEG/PNG/WebP paths) or `sendDocument` (GIF/PDF/ZIP: the only documents Telegram
    fetches by URL), with the body as its caption when it fits 1024 characters and as a
    `sendMessage` first otherwise; any other URL goes as a link after the text. Telegram
    answers `{"ok": true, "result": <Message>}`; message ids are only unique within a chat, so the
    provider id is `<chat id>:<message id>`. Telegram reports no delivery or reading, so an accepted
    message is `sent` for good. Errors are `{"ok": false, "error_code", "description"}`: 429 (flood
    control, `parameters.retry_after`) and 5xx mean try again later; other 4xx are refusals
    (403 "Forbidden: bot was blocked by the user"). The bot token is part of the URL path, so no
    URL, and no text that could hold the token, ever reaches a log or an exception.

    A send that carries a reply token (the id of a button tap the customer just made) first calls
    `answerCallbackQuery` with it, with no text, so the customer's spinner stops. That is best
    effort: Telegram refuses a query that is too old or answered already (400 "query is too old
    and response timeout expired or query ID is invalid"), and the message goes out all the same.
    A tap the hub sends nothing after within the TTL (a changed rating, which gets no thanks) is
    not answered: the app gives up its spinner by itself.
"""

from __future__ import annotations

import hmac
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest, json_object_body
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import InvalidIdentity, normalize_phone, user_id_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped, WebhookItem

PROVIDER = "telegram"
ACKNOWLEDGEMENT_TYPE = "text/plain; charset=utf-8"
# A button tap's callback query is answerable for a few seconds only (Telegram documents no figure;
# bots see it refused after about 10-15 s): a send later than this does not try it.
CALLBACK_ANSWER_TTL = timedelta(seconds=15)
# sendMessage takes 4,096 characters; one file per message (the text goes as its caption or after
# it); no window. The "reply token" is a button tap's callback query id (see the module docstring).
RULES = {Channel.TELEGRAM.value: ChannelRules(name="Telegram", body_chars=4096, reply_token_ttl=CALLBACK_ANSWER_TTL)}
WEBHOOK_HEADER = "x-telegram-bot-api-secret-token"
DEFAULT_API_BASE_URL = "https://api.telegram.org"

MAX_TEXT_CHARS = 4096  # sendMessage: 1-4096 characters after entities parsing
MAX_CAPTION_CHARS = 1024  # sendPhoto / sendDocument caption: 0-1024 characters
# Telegram ids "have at most 52 significant bits" (User.id, Chat.id); update and message ids are smaller.
MAX_ID = 2**53
MAX_INBOUND_TEXT_CHARS = 20_000  # Telegram sends at most 4096; keeps one DynamoDB item small
MAX_FIELD_CHARS = 1000  # names, titles, addresses, file names
MAX_FILE_ID_CHARS = 512
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_ERROR_TEXT_CHARS = 500

# Deep-link payloads are 1-64 characters of A-Z, a-z, 0-9, _ and - (https://core.telegram.org/bots/features#deep-linking).
_START = re.compile(r"^/start(?:@[A-Za-z0-9_]{1,64})?(?:[ \t]+([A-Za-z0-9_-]{1,64}))?\s*$")
_PHOTO_PATH = re.compile(r"\.(?:jpe?g|png|webp)$", re.IGNORECASE)
# "In sendDocument, sending by URL will currently only work for GIF, PDF and ZIP files."
_DOCUMENT_PATH = re.compile(r"\.(?:gif|pdf|zip)$", re.IGNORECASE)
_DIGITS = re.compile(r"^\d{6,15}$")
# CallbackQuery.id: "unique identifier for this query", a decimal string in practice.
_CALLBACK_QUERY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CALLBACK_ANSWER_TIMEOUT = 3.0  # seconds: a slow answer must not hold the message itself back
# Kinds of file a message may carry, with the type Telegram's object implies when it names none.
# `animation` comes first: Telegram also sets `document` on an animation message, for old clients.
_FILE_KINDS: tuple[tuple[str, str | None], ...] = (
    ("animation", "video/mp4"),
    ("document", None),
    ("audio", "audio/mpeg"),
    ("video", "video/mp4"),
    ("video_note", "video/mp4"),
    ("voice", "audio/ogg"),
    ("sticker", None),
)
_SKIPPED_UPDATES = {
    "channel_post": "channel posts are broadcasts, not a customer writing",
    "edited_channel_post": "channel posts are broadcasts, not a customer writing",
    "business_connection": "Telegram Business accounts are not connected to the hub",
    "business_message": "Telegram Business accounts are not connected to the hub",
    "edited_business_message": "Telegram Business accounts are not connected to the hub",
    "deleted_business_messages": "Telegram Business accounts are not connected to the hub",
    "message_reaction": "reactions are not messages",
    "message_reaction_count": "reactions are not messages",
    "inline_query": "the bot offers no inline mode",
    "chosen_inline_result": "the bot offers no inline mode",
    "shipping_query": "payments are not handled by the hub",
    "pre_checkout_query": "payments are not handled by the hub",
    "purchased_paid_media": "payments are not handled by the hub",
    "poll": "polls are not used",
    "poll_answer": "polls are not used",
    "chat_member": "member changes in group chats are not followed",
    "chat_join_request": "group chats are not customers",
    "chat_boost": "chat boosts are not followed",
    "removed_chat_boost": "chat boosts are not followed",
}


# --- Webhook ----------------------------------------------------------------------------------------


def verify(request: WebhookRequest) -> None:
    """Check X-Telegram-Bot-Api-Secret-Token; refuse everything while TELEGRAM_SECRET_TOKEN is unset."""
    from chalicelib.config import secret

    expected = secret("telegram_secret_token")
    if not expected:
        raise WebhookRejected("TELEGRAM_SECRET_TOKEN is not configured")
    given = request.header(WEBHOOK_HEADER)
    if not given:
        raise WebhookRejected("X-Telegram-Bot-Api-Secret-Token header is missing")
    # Bytes, so a non-ASCII header is simply unequal (compare_digest refuses non-ASCII str).
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise WebhookRejected("X-Telegram-Bot-Api-Secret-Token does not match")


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """The (verified) update as one hub item: a message, a consent change, or Skipped."""
    update = _json_body(request.body)
    update_id = _update_id(update.get("update_id"))
    used = [key for key in ("message", "edited_message", "my_chat_member", "callback_query") if key in update]
    kind = used[0] if used else next((key for key in update if key != "update_id"), None)
    if kind is None:
        return [Skipped("telegram:?", "update without content")]
    label = f"telegram:{kind}"
    if kind in ("message", "edited_message"):
        return [_message_item(update_id, _object(update[kind], kind), edited=kind == "edited_message")]
    if kind == "my_chat_member":
        return [_member_change(_object(update[kind], kind))]
    if kind == "callback_query":
        return [_button_press(update_id, _object(update[kind], kind))]
    return [Skipped(label, _SKIPPED_UPDATES.get(kind, "update type not used by the hub"))]


def acknowledgement(outcome: BatchOutcome) -> str:
    """Telegram only looks at the status code; any 2xx body will do."""
    return "ok"


def missing_settings(channel: str) -> list[str]:
    from chalicelib.config import secret

    return [] if secret("telegram_bot_token") else ["TELEGRAM_BOT_TOKEN"]


def _json_body(body: bytes) -> dict[str, Any]:
    return json_object_body(
        body,
        empty="the body is empty; Telegram sends one Update as a JSON object",
        not_object="the body must be a JSON object (a Telegram Update)",
    )


def _update_id(value: Any) -> int:
    if value is None:
        raise MalformedPayload("'update_id' is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload("'update_id' must be an integer")
    if not 0 <= value < MAX_ID:
        raise MalformedPayload("'update_id' is out of range")
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"'{name}' must be an object")
    return value


def _id(value: Any, name: str) -> int:
    """A positive Telegram id (user, message), which fits in 53 bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"'{name}' must be an integer")
    if not 0 < value < MAX_ID:
        raise MalformedPayload(f"'{name}' is out of range")
    return value


def _optional_text(value: Any, name: str, limit: int) -> str:
    """A text field the message may have: '' when absent, MalformedPayload when not a string."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedPayload(f"'{name}' must be a string")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _label(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """A descriptive string (a name, a title): trimmed, and '' for anything that is not a string."""
    if not isinstance(value, str):
        return ""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_ID else None


def _timestamp(value: Any) -> datetime | None:
    """Telegram's `date` (seconds since the epoch), if it is a sane one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**40:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def profile_name(user: dict[str, Any]) -> str | None:
    """`First Last (@username)`, from what the user shows on Telegram."""
    name = _full_name(user)
    username = _label(user.get("username"), 64)
    if username:
        name = f"{name} (@{username})" if name else f"@{username}"
    return name or None


def _full_name(person: dict[str, Any]) -> str:
    first, last = _label(person.get("first_name"), 128), _label(person.get("last_name"), 128)
    return " ".join(part for part in (first, last) if part)


def _bot_address() -> str:
    """The business's side of the chat: the bot's @username when configured."""
    from chalicelib.config import settings

    username = settings().telegram_bot_username.strip().lstrip("@")
    return f"@{username}" if username else "telegram-bot"


def _sender(message: dict[str, Any], label: str) -> tuple[dict[str, Any], int] | Skipped:
    chat = _object(message.get("chat"), f"{label}.chat")
    chat_type = chat.get("type")
    if chat_type != "private":
        kind = chat_type if isinstance(chat_type, str) and len(chat_type) <= 32 else "non-private"
        return Skipped(label, f"from a {kind} chat: the hub serves one-to-one chats only")
    user = message.get("from")
    if user is None:
        return Skipped(label, "no sender")
    user = _object(user, f"{label}.from")
    if user.get("is_bot") is True:
        return Skipped(label, "sent by a bot")
    return user, _id(user.get("id"), f"{label}.from.id")


def _message_item(update_id: int, message: dict[str, Any], *, edited: bool) -> WebhookItem:
    label = "telegram:edited_message" if edited else "telegram:message"
    found = _sender(message, label)
    if isinstance(found, Skipped):
        return found
    user, user_id = found
    message_id = _id(message.get("message_id"), f"{label}.message_id")
    try:
        sender = user_id_identity(Channel.TELEGRAM.value, str(user_id))
    except InvalidIdentity:  # cannot happen for a checked integer; kept so no error escapes as a 500
        return Skipped(label, "from.id is not a Telegram user id")
    text = _optional_text(message.get("text"), f"{label}.text", MAX_INBOUND_TEXT_CHARS)
    caption = _optional_text(message.get("caption"), f"{label}.caption", MAX_INBOUND_TEXT_CHARS)
    media = _media(message, label)
    lines = [part for part in (text, caption) if part]
    verified_phone = None
    if "contact" in message:
        contact_text, verified_phone = _contact(_object(message["contact"], f"{label}.contact"), user_id)
        lines.append(contact_text)
    location = _location(message)
    if location:
        if edited and not lines and not media:
            return Skipped(label, "a live location update")
        lines.append(location)
    sticker = message.get("sticker")
    if not lines and isinstance(sticker, dict):
        emoji = _label(sticker.get("emoji"), 16)
        lines.append(f"[sticker {emoji}]" if emoji else "[sticker]")
    body = "\n".join(lines)
    if not body and not media:
        present = sorted(key[:32] for key in message if key not in ("message_id", "from", "chat", "date"))[:5]
        return Skipped(label, f"nothing the hub can show ({', '.join(present) or 'empty message'})")
    link_code = None
    if edited:
        body = f"(edited message {message_id}) {body}"
        verified_phone = None  # a contact cannot be edited; only a new message vouches for a number
    else:
        start = _START.match(text) if text else None
        link_code = start.group(1) if start and start.group(1) else None
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=str(update_id),
        channel=Channel.TELEGRAM,
        sender=sender,
        sender_address=str(user_id),
        recipient_address=_bot_address(),
        body=body,
        media=media,
        profile_name=profile_name(user),
        verified_phone=verified_phone,
        link_code=link_code,
    )


def _button_press(update_id: int, query: dict[str, Any]) -> WebhookItem:
    """A tap on one of the hub's inline buttons: the button's data is what the customer answered
    (a survey rating), handled like a message they typed."""
    label = "telegram:callback_query"
    pressed_on = query.get("message")
    if not isinstance(pressed_on, dict):
        return Skipped(label, "a button on an inline message (not in a chat with the bot)")
    found = _sender({"chat": pressed_on.get("chat"), "from": query.get("from")}, label)
    if isinstance(found, Skipped):
        return found
    user, user_id = found
    data = _optional_text(query.get("data"), f"{label}.data", MAX_CALLBACK_DATA)
    if not data:
        return Skipped(label, "a button without data (a game or an inline message)")
    query_id = query.get("id")
    # A malformed id is only not answered: the tap itself is still the customer's answer.
    callback_id = query_id if isinstance(query_id, str) and _CALLBACK_QUERY_ID.fullmatch(query_id) else None
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=str(update_id),
        channel=Channel.TELEGRAM,
        sender=user_id_identity(Channel.TELEGRAM.value, str(user_id)),
        sender_address=str(user_id),
        recipient_address=_bot_address(),
        body=data,
        profile_name=profile_name(user),
        reply_token=callback_id,
    )


def _contact(contact: dict[str, Any], sender_id: int) -> tuple[str, str | None]:
    """The contact as text, and the sender's own number (E.164) when they shared their own contact."""
    number = _label(contact.get("phone_number"), 64)
    text = "Contact: " + ", ".join(part for part in (_full_name(contact), number) if part)
    owner = contact.get("user_id")
    if isinstance(owner, bool) or not isinstance(owner, int) or owner != sender_id or not number:
        return text, None
    return text, own_number(number)


def own_number(raw: str) -> str | None:
    """E.164 form of the number a user shared as their own, or None.

    Telegram accounts are registered with full international numbers, and Telegram gives them
    without the "+" (`15017122661`) from some apps and with it from others, so bare digits are
    read as international. Bare digits could also be a national number typed into an address
    book (`5017122661`, which Telegram may still match to the sender's account), so they count
    only if they form a valid number with a country code: a wrong reading must not bind the
    sender to someone else's number. A national form with punctuation is never verified."""
    text = raw.strip()
    bare = bool(_DIGITS.fullmatch(text))
    if bare:
        text = "+" + text
    if not text.startswith("+"):
        return None
    try:
        number = normalize_phone(text)
    except InvalidIdentity:
        return None
    if bare:
        import phonenumbers

        if not phonenumbers.is_valid_number(phonenumbers.parse(number, None)):
            return None
    return number


def _location(message: dict[str, Any]) -> str:
    venue = message.get("venue")
    place = venue.get("location") if isinstance(venue, dict) else None
    point = place if isinstance(place, dict) else message.get("location")
    if not isinstance(point, dict):
        return ""
    latitude, longitude = point.get("latitude"), point.get("longitude")
    if not (_coordinate(latitude, 90) and _coordinate(longitude, 180)):
        return ""
    where = f"{latitude},{longitude}"
    label = "Location"
    if isinstance(venue, dict):
        named = ", ".join(part for part in (_label(venue.get("title")), _label(venue.get("address"))) if part)
        label = f"Location: {named}" if named else label
    return f"{label}: {where}\nhttps://maps.google.com/?q={where}"


def _coordinate(value: Any, bound: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and -bound <= value <= bound


def _media(message: dict[str, Any], label: str) -> list[Media]:
    """The message's files, as `Media(url=None, content_id=<file_id>)` (see the module docstring)."""
    found: list[Media] = []
    seen: set[str] = set()
    photo = message.get("photo")
    if photo is not None:
        if not isinstance(photo, list) or not photo:
            raise MalformedPayload(f"'{label}.photo' must be a list of sizes")
        sizes = [_object(size, f"{label}.photo[]") for size in photo[:20]]
        # Telegram lists a photo's sizes smallest first; the pixel count decides, whatever the order.
        largest = max(sizes, key=lambda size: (_size(size.get("width")) or 0) * (_size(size.get("height")) or 0))
        file_id = _file_id(largest, f"{label}.photo")
        seen.add(file_id)
        found.append(Media(content_type="image/jpeg", size=_size(largest.get("file_size")), content_id=file_id))
    for kind, default_type in _FILE_KINDS:
        item = message.get(kind)
        if item is None:
            continue
        item = _object(item, f"{label}.{kind}")
        file_id = _file_id(item, f"{label}.{kind}")
        unique = item.get("file_unique_id")
        key = unique if isinstance(unique, str) and unique else file_id
        if key in seen or file_id in seen:
            continue  # an animation is also given as a document
        seen.update((key, file_id))
        content_type = _label(item.get("mime_type"), 255) or default_type
        if kind == "sticker":
            content_type = _sticker_type(item)
        found.append(
            Media(
                content_type=content_type,
                filename=_label(item.get("file_name"), 255) or None,
                size=_size(item.get("file_size")),
                content_id=file_id,
            )
        )
    return found


def _file_id(item: dict[str, Any], name: str) -> str:
    file_id = item.get("file_id")
    if not isinstance(file_id, str) or not file_id or len(file_id) > MAX_FILE_ID_CHARS:
        raise MalformedPayload(f"'{name}.file_id' must be a non-empty string")
    return file_id


def _sticker_type(sticker: dict[str, Any]) -> str:
    if sticker.get("is_animated") is True:
        return "application/x-tgsticker"
    if sticker.get("is_video") is True:
        return "video/webm"
    return "image/webp"


def _member_change(change: dict[str, Any]) -> WebhookItem:
    """The bot blocked (`kicked`) or unblocked by a user in their private chat with it."""
    label = "telegram:my_chat_member"
    chat = _object(change.get("chat"), "my_chat_member.chat")
    if chat.get("type") != "private":
        return Skipped(label, "the bot's membership of a group or channel changed")
    user = _object(change.get("from"), "my_chat_member.from")
    user_id = _id(user.get("id"), "my_chat_member.from.id")
    new = _object(change.get("new_chat_member"), "my_chat_member.new_chat_member")
    old = change.get("old_chat_member")
    old_status = old.get("status") if isinstance(old, dict) else None
    new_status = new.get("status")
    occurred_at = _timestamp(change.get("date")) or utcnow()
    sender = user_id_identity(Channel.TELEGRAM.value, str(user_id))
    if new_status == "kicked":
        return ConsentChange(Channel.TELEGRAM, sender, opted_out=True, occurred_at=occurred_at)
    if new_status == "member" and old_status == "kicked":
        return ConsentChange(Channel.TELEGRAM, sender, opted_out=False, occurred_at=occurred_at)
    return Skipped(label, "a membership change other than blocking or unblocking the bot")


# --- Sending ----------------------------------------------------------------------------------------


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """Send the reply as one Bot API call when it fits, else as a few (see `requests_for`). The bot
    token is configured: `tokens` is not used."""
    from chalicelib.config import secret, settings

    token = secret("telegram_bot_token")
    if not token:
        raise ProviderUnavailable(PROVIDER, "TELEGRAM_BOT_TOKEN is not configured")
    if len(outgoing.media_urls) > 1:
        raise ProviderRejected(PROVIDER, "too_many_media", "Telegram takes one file per message", 400)
    base_url = settings().telegram_api_base_url.strip().rstrip("/") or DEFAULT_API_BASE_URL
    api = _Api(base_url, token, outgoing.timeout)
    chat_id = chat_id_of(outgoing.recipient)
    media_url = outgoing.media_urls[0] if outgoing.media_urls else None
    if outgoing.reply_token:
        answer_callback(_Api(base_url, token, min(outgoing.timeout, CALLBACK_ANSWER_TIMEOUT)), outgoing.reply_token)
    (method, params), *rest = requests_for(chat_id, outgoing.body, media_url)
    if outgoing.choices and method == "sendMessage":
        params = {**params, "reply_markup": inline_keyboard(outgoing.choices)}
    first = _sent(api.call(method, params), chat_id)
    for method, params in rest:
        try:
            api.call(method, params)
        except (ProviderRejected, ProviderUnavailable) as exc:
            # Retrying would send the first part twice: record the reply as failed, saying what went out.
            reason = exc.message if isinstance(exc, ProviderRejected) else exc.reason
            what = f"the text was sent ({first.provider_message_id}) but not the rest: {reason}"
            raise ProviderRejected(
                PROVIDER,
                exc.code if isinstance(exc, ProviderRejected) else "partly_sent",
                what[:MAX_ERROR_TEXT_CHARS],
                exc.http_status if isinstance(exc, ProviderRejected) else 502,
            ) from None
    return first


def answer_callback(api: _Api, callback_query_id: str) -> bool:
    """Stop the spinner on the button the customer tapped (answerCallbackQuery, no notification
    text). Best effort: True when Telegram took it; a refusal (too old, answered already) or an
    outage is logged and the send goes on."""
    from chalicelib.observability import logger

    try:
        api.call("answerCallbackQuery", {"callback_query_id": callback_query_id})
    except (ProviderRejected, ProviderUnavailable) as exc:
        reason = exc.message if isinstance(exc, ProviderRejected) else exc.reason
        logger.info("telegram callback query not answered", extra={"reason": reason[:MAX_ERROR_TEXT_CHARS]})
        return False
    return True


# callback_data is 1-64 bytes; one row of buttons per choice keeps long labels readable.
MAX_CALLBACK_DATA = 64


def inline_keyboard(choices: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        "inline_keyboard": [
            [{"text": label[:64], "callback_data": choice_id.encode()[:MAX_CALLBACK_DATA].decode("utf-8", "ignore")}]
            for choice_id, label in choices
        ]
    }


def requests_for(chat_id: int | str, body: str, media_url: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The Bot API calls for a reply, the text first.

    A picture (JPEG, PNG, WebP path) goes by sendPhoto and a GIF, PDF or ZIP by sendDocument (the
    only files Telegram fetches by URL for a document), with the text as the caption when it fits
    1024 characters and as a sendMessage before the file otherwise. Any other URL would be refused
    by sendDocument, so it goes as a link after the text."""
    text_call = ("sendMessage", {"chat_id": chat_id, "text": body})
    if media_url is None:
        return [text_call]
    kind = _file_kind(media_url)
    if kind is None:
        joined = f"{body.rstrip()}\n{media_url}" if body.strip() else media_url
        if len(joined) <= MAX_TEXT_CHARS:
            return [("sendMessage", {"chat_id": chat_id, "text": joined})]
        return [text_call, ("sendMessage", {"chat_id": chat_id, "text": media_url})]
    method, field = kind
    file_call: dict[str, Any] = {"chat_id": chat_id, field: media_url}
    if len(body) <= MAX_CAPTION_CHARS:
        if body.strip():
            file_call["caption"] = body
        return [(method, file_call)]
    return [text_call, (method, file_call)]


def chat_id_of(recipient: str) -> int | str:
    """The chat id as Telegram's Integer when it is one (a user id), else as given (`@channel`)."""
    value = recipient.strip()
    if re.fullmatch(r"-?\d{1,16}", value):
        return int(value)
    return value


def _file_kind(url: str) -> tuple[str, str] | None:
    """(method, parameter) that sends the file at `url`, or None when Telegram cannot fetch it as one."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    if _PHOTO_PATH.search(path):
        return "sendPhoto", "photo"
    if _DOCUMENT_PATH.search(path):
        return "sendDocument", "document"
    return None


class _Api:
    """Bot API calls for one token. The token is in the URL path, so neither the URL nor any error
    text that might echo it leaves this class unredacted."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self._base_url = base_url
        self._token = token
        self._timeout = timeout

    def redact(self, text: str) -> str:
        for secret_form in {self._token, quote(self._token, safe="")}:
            text = text.replace(secret_form, "<bot token>")
        return text[:MAX_ERROR_TEXT_CHARS]

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST `params` as JSON; the `result` of an ok answer, else ProviderRejected/Unavailable."""
        from chalicelib.channels.http_json import post_json

        # Quoted: a token with a "/" or "?" must not change which path is called.
        url = f"{self._base_url}/bot{quote(self._token, safe=':')}/{method}"
        # On failure only the exception's type is told: the URL holds the token.
        answer = post_json(
            PROVIDER,
            url,
            params,
            timeout=self._timeout,
            api_base_url=DEFAULT_API_BASE_URL,
            base_url_setting="TELEGRAM_API_BASE_URL",
            max_bytes=MAX_RESPONSE_BYTES,
            failure_prefix=f"{method}: ",
        )
        status, body = answer.status, answer.json()
        return self._result(method, status, body)

    def _result(self, method: str, status: int, body: Any) -> dict[str, Any]:
        answer = body if isinstance(body, dict) else {}
        if 200 <= status < 300 and answer.get("ok") is True:
            result = answer.get("result")
            return result if isinstance(result, dict) else {}
        code = answer.get("error_code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else status
        description = answer.get("description")
        text = self.redact(description if isinstance(description, str) and description else f"HTTP {status}")
        if status == 429 or code == 429:
            parameters = answer.get("parameters")
            wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
            after = f"; retry after {wait} s" if isinstance(wait, int) and not isinstance(wait, bool) else ""
            raise ProviderUnavailable(PROVIDER, f"{method}: {text}{after}")
        if status >= 500 or status < 400:
            raise ProviderUnavailable(PROVIDER, f"{method}: HTTP {status}: {text}")
        from chalicelib.observability import logger

        logger.warning("telegram refused a message", extra={"method": method, "code": code, "description": text})
        raise ProviderRejected(PROVIDER, str(code), text, status)


def _sent(result: dict[str, Any], chat_id: int | str) -> SentMessage:
    message_id = result.get("message_id")
    chat = result.get("chat")
    chat_ref = chat.get("id") if isinstance(chat, dict) else None
    if isinstance(chat_ref, bool) or not isinstance(chat_ref, int | str):
        chat_ref = chat_id
    valid = isinstance(message_id, int) and not isinstance(message_id, bool)
    return SentMessage(
        provider=PROVIDER,
        # Message ids count up per chat, so only the pair names one message.
        provider_message_id=f"{chat_ref}:{message_id}" if valid else None,
        status=DeliveryStatus.SENT,  # Telegram reports no delivery: accepted is as far as it goes
        sender_address=_bot_address(),
        recipient_address=str(chat_id),
    )
