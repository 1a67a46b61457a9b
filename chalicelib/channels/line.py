"""LINE Messaging API: the webhook of a LINE Official Account, and replies and pushes to its users.

Webhook (https://developers.line.biz/en/reference/messaging-api/#webhooks)
    LINE POSTs `{"destination": "<bot user id>", "events": [...]}` as JSON. `x-line-signature` is
    base64(HMAC-SHA256(raw body bytes, channel secret)); it is checked, in constant time, before
    anything reads the body. An empty `events` list is LINE's connectivity check (the console's
    "Verify" button) and is answered 200 with nothing stored. LINE expects 200 for every webhook it
    could deliver, so an event the hub cannot use is skipped (logged), never refused: only a body
    that is not a JSON object with an `events` list is a 400.

    Each event carries a `webhookEventId` (a ULID) that stays the same when LINE redelivers a
    webhook the hub failed to acknowledge (`deliveryContext.isRedelivery` is then true, nothing else
    changes), so it is the message's provider id and the dedupe key.

    * `message` from a user (one-to-one chat): text, image, video, audio, file, location, sticker.
      Media sent from the LINE app have no public URL: their bytes are fetched by message id from
      `GET https://api-data.line.me/v2/bot/message/{id}/content` with the channel access token,
      so they are kept as `Media(url=None, content_id=<message id>)`; media whose
      `contentProvider.type` is `external` carry their own `originalContentUrl`, which is kept.
      The event's `replyToken` rides along: the reply use case answers with it (free) while it is
      fresh, and pushes otherwise.
    * `postback` (a button the customer tapped) is a message whose body is the postback data.
    * `follow` (added as a friend, or unblocked: `follow.isUnblocked`) opts the customer back in;
      `unfollow` (blocked) opts them out.
    * Group chats and multi-person chats (`source.type` `group` / `room`) are skipped: the hub keeps
      one thread per customer, and an agent's answer to a group would be pushed to every member of
      it, so a group is not a customer; LINE also omits the sender of many group events.
    * Everything else (unsend, join/leave, memberJoined/Left, videoPlayComplete, beacon,
      accountLink, membership, module events, unknown types) is skipped.

Sending (https://developers.line.biz/en/reference/messaging-api/#messages)
    With a reply token, `POST /v2/bot/message/reply` (free; single use; about a minute to live).
    If LINE answers 400 "Invalid reply token" (used or expired), the same messages are pushed:
    `POST /v2/bot/message/push` to the user id, with an `X-Line-Retry-Key` derived from the hub's
    message id, so a repeated push of the same message is executed once: LINE answers the repeat
    409 with `x-line-accepted-request-id` (and, for pushes, the first request's `sentMessages`),
    which is success. Text longer than LINE's 5,000 UTF-16 code units is split into several text
    messages; an HTTPS JPEG/PNG URL goes as an image message, any other media URL as a link.
    LINE has no delivery receipts, so an accepted message is `sent` for good.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest, json_object_body
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import InvalidIdentity, user_id_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage
from chalicelib.domain.surveys import CHOICE_ID_PREFIX
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped, WebhookItem

PROVIDER = "line"
ACKNOWLEDGEMENT_TYPE = "text/plain; charset=utf-8"
# A text message holds 5,000 characters; one image per reply here; a reply token is free but single
# use and must be used soon after the event (older ones are not tried: the message is pushed).
RULES = {Channel.LINE.value: ChannelRules(name="LINE", body_chars=5000, reply_token_ttl=timedelta(seconds=50))}
SIGNATURE_HEADER = "x-line-signature"
RETRY_KEY_HEADER = "X-Line-Retry-Key"
ACCEPTED_REQUEST_HEADER = "x-line-accepted-request-id"
DEFAULT_API_BASE_URL = "https://api.line.me"
REPLY_PATH = "/v2/bot/message/reply"
PUSH_PATH = "/v2/bot/message/push"
# LINE's 400 message for a used or expired reply token.
STALE_REPLY_MESSAGE = "Invalid reply token"

MAX_MESSAGES_PER_REQUEST = 5  # reply and push take 1 to 5 message objects
MAX_TEXT_UNITS = 5000  # a text message holds 5,000 characters, counted in UTF-16 code units
MAX_IMAGE_URL_CHARS = 2000
MAX_INBOUND_TEXT_CHARS = 20_000  # far above what the LINE app sends; keeps one DynamoDB item small
MAX_FIELD_CHARS = 1000  # titles, addresses, file names, postback parameters
MAX_EVENT_ID_CHARS = 128
MAX_ERROR_TEXT_CHARS = 500
MAX_RESPONSE_BYTES = 1024 * 1024
# A redelivered webhook's reply token is refused once 20 minutes have passed since the event.
REDELIVERED_REPLY_TOKEN_LIMIT = timedelta(minutes=20)
# Tokens LINE used in its old console verification requests: they never answer anything.
_DUMMY_REPLY_TOKENS = frozenset({"0" * 32, "f" * 32})
# Namespace of the push retry keys (uuid5 over the hub's message id): the same message, the same key.
_RETRY_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/omnihub/line/push-retry-key")

_USER_ID = re.compile(r"U[0-9a-f]{32}")
_EVENT_ID = re.compile(r"[0-9A-Za-z_-]+")
_MESSAGE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_IMAGE_PATH = re.compile(r"\.(?:jpe?g|png)$", re.IGNORECASE)
_MEDIA_KINDS = {"image": "image/*", "video": "video/*", "audio": "audio/*"}
_IGNORED_EVENTS = {
    "unsend": "unsending is not mirrored in the thread",
    "join": "group and multi-person chats are not customers",
    "leave": "group and multi-person chats are not customers",
    "memberJoined": "group and multi-person chats are not customers",
    "memberLeft": "group and multi-person chats are not customers",
    "videoPlayComplete": "video statistics are not kept",
    "beacon": "LINE Beacon is not used",
    "accountLink": "account linking is not used",
    "membership": "memberships are not used",
}


# --- Webhook ----------------------------------------------------------------------------------------


def verify(request: WebhookRequest) -> None:
    """Check `x-line-signature` over the raw body; refuse everything if the channel secret is unset."""
    from chalicelib.config import secret

    channel_secret = secret("line_channel_secret")
    if not channel_secret:
        raise WebhookRejected("LINE_CHANNEL_SECRET is not configured")
    signature = request.header(SIGNATURE_HEADER).strip()
    if not signature:
        raise WebhookRejected("x-line-signature header is missing")
    expected = signature_of(request.body, channel_secret)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise WebhookRejected("x-line-signature does not match the request body")


def signature_of(body: bytes, channel_secret: str) -> str:
    """base64(HMAC-SHA256(body, channel secret)), as LINE signs a webhook."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """Every event of a (verified) webhook as a hub item; unusable events become `Skipped`."""
    payload = _json_body(request.body)
    events = payload.get("events")
    if not isinstance(events, list):
        raise MalformedPayload("the body must be a JSON object with an 'events' list")
    destination = payload.get("destination")
    bot_id = destination if isinstance(destination, str) and _USER_ID.fullmatch(destination) else None
    now = utcnow()
    return [_event_item(event, bot_id, now) for event in events]


def acknowledgement(outcome: BatchOutcome) -> str:
    """LINE only looks at the status code; any 2xx body will do."""
    return "OK"


def missing_settings(channel: str) -> list[str]:
    from chalicelib.config import secret

    return [] if secret("line_channel_access_token") else ["LINE_CHANNEL_ACCESS_TOKEN"]


def _json_body(body: bytes) -> dict[str, Any]:
    return json_object_body(
        body,
        empty="the body is empty; LINE sends a JSON object with an 'events' list",
        not_object="the body must be a JSON object with an 'events' list",
    )


def _event_item(event: Any, bot_id: str | None, now: datetime) -> WebhookItem:
    if not isinstance(event, dict):
        return Skipped("line:?", "event is not a JSON object")
    kind = _text(event.get("type"), 64) or "?"
    label = f"line:{kind}"
    if kind in _IGNORED_EVENTS:
        return Skipped(label, _IGNORED_EVENTS[kind])
    if kind not in ("message", "postback", "follow", "unfollow"):
        return Skipped(label, "event type not used by the hub")
    source = event.get("source")
    source_type = source.get("type") if isinstance(source, dict) else None
    if source_type in ("group", "room"):
        chat = "a group chat" if source_type == "group" else "a multi-person chat"
        return Skipped(label, f"from {chat}: the hub serves one-to-one chats only")
    if source_type != "user":
        return Skipped(label, "no user source")
    user_id = source.get("userId")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        return Skipped(label, "source.userId is not a LINE user id")
    try:
        sender = user_id_identity(Channel.LINE.value, user_id)
    except InvalidIdentity:
        return Skipped(label, "source.userId is not a LINE user id")
    occurred_at = _timestamp(event.get("timestamp"))
    if kind in ("follow", "unfollow"):
        return ConsentChange(Channel.LINE, sender, opted_out=kind == "unfollow", occurred_at=occurred_at or now)
    event_id = event.get("webhookEventId")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_CHARS:
        return Skipped(label, "webhookEventId is missing or too long")
    if not _EVENT_ID.fullmatch(event_id):
        return Skipped(label, "webhookEventId is not a ULID")
    if kind == "postback":
        content: tuple[str, list[Media]] | Skipped = _postback(event.get("postback"))
    else:
        content = _message_content(event.get("message"))
    if isinstance(content, Skipped):
        return content
    body, media = content
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=event_id,
        channel=Channel.LINE,
        sender=sender,
        sender_address=user_id,
        recipient_address=bot_id or "",
        body=body,
        media=media,
        provider_account=bot_id,
        reply_token=_reply_token(event, occurred_at, now),
    )


def _reply_token(event: dict[str, Any], occurred_at: datetime | None, now: datetime) -> str | None:
    """The event's reply token, if LINE could still accept it.

    Its minute starts when the (re)delivered webhook arrives, which is when the hub stamps the
    message (received_at), so arrival is the clock. A redelivered event's token is refused 20
    minutes after the event itself. In `standby` mode another module owns the chat and LINE sends
    no token."""
    token = event.get("replyToken")
    if not isinstance(token, str) or not token or len(token) > 256 or token in _DUMMY_REPLY_TOKENS:
        return None
    if event.get("mode") == "standby":
        return None
    context = event.get("deliveryContext")
    redelivered = isinstance(context, dict) and context.get("isRedelivery") is True
    if redelivered and (occurred_at is None or now - occurred_at >= REDELIVERED_REPLY_TOKEN_LIMIT):
        return None
    return token


def _timestamp(value: Any) -> datetime | None:
    """LINE's event time (milliseconds since the epoch), if it is a sane one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 < value < 2**53:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """A string field, trimmed to `limit` characters; anything else is ''."""
    if not isinstance(value, str):
        return ""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _message_content(message: Any) -> tuple[str, list[Media]] | Skipped:
    if not isinstance(message, dict):
        return Skipped("line:message", "no message object")
    kind = _text(message.get("type"), 64) or "?"
    label = f"line:message:{kind}"
    raw_id = message.get("id")
    message_id = raw_id if isinstance(raw_id, str) and _MESSAGE_ID.fullmatch(raw_id) else None
    if kind == "text":
        text = message.get("text")
        if not isinstance(text, str) or not text:
            return Skipped(label, "text message without text")
        return _text(text, MAX_INBOUND_TEXT_CHARS), []
    if kind in _MEDIA_KINDS:
        return f"[{kind}]", [_media(kind, message, message_id)]
    if kind == "file":
        name = _text(message.get("fileName"), 255) or None
        size = message.get("fileSize")
        media = Media(
            filename=name,
            size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            content_id=message_id,
        )
        return (f"[file] {name}" if name else "[file]"), [media]
    if kind == "location":
        return _location(message), []
    if kind == "sticker":
        return _sticker(message), []
    return Skipped(label, "message type not used by the hub")


def _media(kind: str, message: dict[str, Any], message_id: str | None) -> Media:
    """A picture, video or audio: its own URL if an external provider hosts it, else LINE's message id
    (the bytes are behind the channel access token, so no URL is stored)."""
    provider = message.get("contentProvider")
    url = None
    if isinstance(provider, dict) and provider.get("type") == "external":
        original = provider.get("originalContentUrl")
        if isinstance(original, str) and len(original) <= MAX_IMAGE_URL_CHARS and _is_https(original):
            url = original
    return Media(url=url, content_type=_MEDIA_KINDS[kind], content_id=None if url else message_id)


def _location(message: dict[str, Any]) -> str:
    lines = ["[location]"]
    for field_name in ("title", "address"):
        value = _text(message.get(field_name)).strip()
        if value:
            lines.append(value)
    latitude, longitude = message.get("latitude"), message.get("longitude")
    if _coordinate(latitude, 90) and _coordinate(longitude, 180):
        lines.append(f"{latitude},{longitude}")
        lines.append(f"https://www.google.com/maps/search/?api=1&query={latitude},{longitude}")
    return "\n".join(lines)


def _coordinate(value: Any, bound: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and -bound <= value <= bound


def _sticker(message: dict[str, Any]) -> str:
    """A sticker has no text of its own: a message sticker's typed text, else a few of LINE's keywords."""
    text = _text(message.get("text"), 100).strip()
    if text:
        return f"[sticker] {text}"
    keywords = message.get("keywords")
    if isinstance(keywords, list):
        words = [_text(word, 50).strip() for word in keywords[:5] if isinstance(word, str)]
        words = [word for word in words if word]
        if words:
            return f"[sticker: {', '.join(words)}]"
    return "[sticker]"


def _postback(postback: Any) -> tuple[str, list[Media]] | Skipped:
    if not isinstance(postback, dict):
        return Skipped("line:postback", "no postback object")
    data = _text(postback.get("data")).strip()
    params = postback.get("params")
    details = []
    if isinstance(params, dict):
        for key, value in list(params.items())[:10]:
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                details.append(f"{_text(key, 64)}: {_text(str(value), 200)}")
    if not data and not details:
        return Skipped("line:postback", "postback without data")
    if data.startswith(CHOICE_ID_PREFIX) and not details:
        return data, []  # one of the hub's own choices (a survey rating): the answer as typed
    body = f"[postback] {data}".rstrip()
    if details:
        body += f" ({', '.join(details)})"
    return body, []


# --- Sending ----------------------------------------------------------------------------------------


# LINE quick reply: at most 13 items, a label of 20 characters; a tap sends the label as text.
QUICK_REPLY_ITEMS, QUICK_REPLY_LABEL = 13, 20


def quick_reply(choices: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        "items": [
            {"type": "action", "action": {"type": "message", "label": label[:QUICK_REPLY_LABEL], "text": label[:300]}}
            for _choice_id, label in choices[:QUICK_REPLY_ITEMS]
        ]
    }


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """Reply with the token if there is one (falling back to a push if LINE refuses it), else push.
    The channel access token is configured: `tokens` is not used."""
    from chalicelib.config import secret, settings

    access_token = secret("line_channel_access_token")
    if not access_token:
        raise ProviderUnavailable(PROVIDER, "LINE_CHANNEL_ACCESS_TOKEN is not configured")
    messages = message_objects(outgoing.body, outgoing.media_urls, outgoing.choices)
    if not messages:
        raise ProviderRejected(PROVIDER, "empty_message", "nothing to send: no text and no media", 400)
    if len(messages) > MAX_MESSAGES_PER_REQUEST:
        raise ProviderRejected(
            PROVIDER, "too_many_messages", f"the reply needs {len(messages)} LINE messages; at most 5 fit", 400
        )
    base_url = settings().line_api_base_url.rstrip("/") or DEFAULT_API_BASE_URL
    if outgoing.reply_token:
        reply = {"replyToken": outgoing.reply_token, "messages": messages}
        answer = _call(base_url + REPLY_PATH, reply, access_token, outgoing.timeout)
        if not (answer.status == 400 and answer.message == STALE_REPLY_MESSAGE):
            return _sent(answer, outgoing.recipient)
        # Used or expired (a notice to the sender may have spent it): the customer still gets it.
    answer = _call(
        base_url + PUSH_PATH,
        {"to": outgoing.recipient, "messages": messages},
        access_token,
        outgoing.timeout,
        {RETRY_KEY_HEADER: retry_key(outgoing.retry_key or outgoing.hub_message_id)},
    )
    if answer.status == 409 and answer.header(ACCEPTED_REQUEST_HEADER):
        # This very push was accepted before (a retry after a timeout): success, not a duplicate.
        return _accepted(answer, outgoing.recipient)
    return _sent(answer, outgoing.recipient)


def retry_key(hub_message_id: str) -> str:
    """The X-Line-Retry-Key of a message: a UUID derived from the hub's message id, so a retried push
    of the same message carries the same key (LINE keeps a key for 24 hours)."""
    return str(uuid.uuid5(_RETRY_KEY_NAMESPACE, hub_message_id))


def message_objects(
    body: str, media_urls: tuple[str, ...] | list[str] = (), choices: tuple[tuple[str, str], ...] = ()
) -> list[dict[str, Any]]:
    """LINE message objects for a body and media: text (split to fit), then each medium; choices
    ride on the last text as quick reply buttons."""
    messages: list[dict[str, Any]] = [{"type": "text", "text": chunk} for chunk in text_chunks(body)]
    if messages and choices:
        messages[-1]["quickReply"] = quick_reply(choices)
    for url in media_urls:
        if _is_https(url) and len(url) <= MAX_IMAGE_URL_CHARS and _IMAGE_PATH.search(urlsplit(url).path):
            # The preview must also be HTTPS JPEG/PNG; the original serves (LINE shrinks it to fit).
            messages.append({"type": "image", "originalContentUrl": url, "previewImageUrl": url})
        else:
            messages.append({"type": "text", "text": url[:MAX_TEXT_UNITS]})
    return messages


def utf16_units(text: str) -> int:
    """How LINE counts characters: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def text_chunks(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """`text` cut into pieces of at most `limit` UTF-16 units, at a line break or space if one is
    near the end of a piece, never inside a surrogate pair. Blank text gives no piece."""
    if not text.strip():
        return []
    chunks: list[str] = []
    rest = text
    while utf16_units(rest) > limit:
        cut, units = 0, 0
        for index, char in enumerate(rest):
            units += 2 if ord(char) > 0xFFFF else 1
            if units > limit:
                cut = index
                break
        piece = rest[:cut]
        soft = max(piece.rfind("\n"), piece.rfind(" "))
        if soft >= cut // 2:  # a break in the second half: cut after it
            cut = soft + 1
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        chunks.append(rest)
    return chunks


def _is_https(url: str) -> bool:
    if not isinstance(url, str) or any(char.isspace() for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


class _Answer:
    """LINE's HTTP answer: status, headers, the JSON body (or None) and its error message."""

    def __init__(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        self.status = status
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.body = body
        message = body.get("message") if isinstance(body, dict) else None
        self.message = message if isinstance(message, str) else ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def error_text(self) -> str:
        """`message` plus each detail (`property: message`), for the stored failure."""
        parts = [self.message or f"HTTP {self.status}"]
        details = self.body.get("details") if isinstance(self.body, dict) else None
        if isinstance(details, list):
            for detail in details[:10]:
                if isinstance(detail, dict):
                    where, what = detail.get("property"), detail.get("message")
                    text = ": ".join(str(part) for part in (where, what) if isinstance(part, str) and part)
                    if text:
                        parts.append(text)
        return "; ".join(parts)[:MAX_ERROR_TEXT_CHARS]


def _call(
    url: str, payload: dict[str, Any], access_token: str, timeout: float, headers: dict[str, str] | None = None
) -> _Answer:
    """POST JSON to LINE. Network failures and timeouts are ProviderUnavailable; every HTTP answer
    comes back as an _Answer (the token is only ever in the Authorization header)."""
    from chalicelib.channels.http_json import post_json

    answer = post_json(
        PROVIDER,
        url,
        payload,
        timeout=timeout,
        api_base_url=DEFAULT_API_BASE_URL,
        base_url_setting="LINE_API_BASE_URL",
        max_bytes=MAX_RESPONSE_BYTES,
        headers={"Authorization": f"Bearer {access_token}", **(headers or {})},
    )
    return _Answer(answer.status, answer.headers, answer.json())


def _sent(answer: _Answer, recipient: str) -> SentMessage:
    if 200 <= answer.status < 300:
        return _accepted(answer, recipient)
    if answer.status == 429 or answer.status >= 500:
        raise ProviderUnavailable(PROVIDER, f"HTTP {answer.status}: {answer.error_text()}")
    if 400 <= answer.status < 500:
        raise ProviderRejected(PROVIDER, str(answer.status), answer.error_text(), answer.status)
    raise ProviderUnavailable(PROVIDER, f"unexpected HTTP {answer.status}")


def _accepted(answer: _Answer, recipient: str) -> SentMessage:
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=_first_sent_id(answer.body),
        status=DeliveryStatus.SENT,  # LINE reports no delivery: accepted is as far as it goes
        sender_address=None,
        recipient_address=recipient,
    )


def _first_sent_id(body: Any) -> str | None:
    sent = body.get("sentMessages") if isinstance(body, dict) else None
    if not isinstance(sent, list) or not sent or not isinstance(sent[0], dict):
        return None
    first = sent[0].get("id")
    if isinstance(first, bool) or not isinstance(first, str | int):
        return None
    text = str(first)
    return text if _MESSAGE_ID.fullmatch(text) else None
