"""Meta: the WhatsApp Cloud API, Messenger and Instagram messaging, behind one app and one webhook.

One Meta app delivers all three products to `POST /webhooks/meta`, signed the same way:
`X-Hub-Signature-256: sha256=<hex>` is HMAC-SHA256 over the raw body with the app secret. The
body is checked byte for byte before it is read as JSON: Meta escapes non-ASCII text as `\\uXXXX`,
so JSON re-serialised by anything else would not match. Before it sends anything, Meta proves the
URL with a GET carrying `hub.mode=subscribe`, the verify token set in the App Dashboard, and a
`hub.challenge` to echo back.

One request batches events: `object` names the product and `entry[]` holds them.

- `whatsapp_business_account`: `entry[].changes[].value` with `messages[]` (from customers) and
  `statuses[]` (receipts for what the hub sent), often both in one envelope. A WhatsApp user is
  known by their phone number (`wa_id`), so they are the same customer as that number on SMS or on
  Twilio's WhatsApp. Media arrive as a Graph media id, not a URL: the stored `Media.url` is the
  media node `{graph}/{version}/{media-id}`, which answers (with the access token) the short-lived
  download URL; the mime type, filename and caption come with the event.
- `page` (Messenger) and `instagram`: `entry[].messaging[]`, one event each: `message`,
  `postback`, `referral` (an m.me/ig.me `?ref=` link: the hub's handoff code), `delivery` (mids),
  `read`, `reaction` and so on. Customers are known by their page-scoped ids (PSID / IGSID).

An event the hub has no use for (reactions, echoes of the page's own sends, read watermarks,
typing, unknown kinds) or cannot use (a missing id, a malformed field) is `Skipped` on its own:
the rest of the batch is still filed, since Meta would otherwise redeliver the whole batch. Only
an envelope that is not Meta's shape at all is refused (400).

Sending goes through the Graph API with the system user's access token: WhatsApp to
`/{phone-number-id}/messages`, Messenger to `/{page-id}/messages`, Instagram to
`/{instagram-account-id}/messages`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import InvalidIdentity, phone_identity, user_id_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, StatusUpdate, utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage
from chalicelib.services.chat_webhooks import Skipped

PROVIDER = "meta"
SIGNATURE_HEADER = "x-hub-signature-256"
ACKNOWLEDGEMENT = "EVENT_RECEIVED"

WHATSAPP_OBJECT = "whatsapp_business_account"
PAGE_OBJECT = "page"
INSTAGRAM_OBJECT = "instagram"
OBJECTS = (WHATSAPP_OBJECT, PAGE_OBJECT, INSTAGRAM_OBJECT)

MAX_ID_CHARS = 512  # wamids are ~60 characters, Instagram mids ~200; anything longer is not Meta's
MAX_NAME_CHARS = 256
MAX_ERROR_CHARS = 500
MAX_CHALLENGE_CHARS = 256
MAX_REF_CHARS = 2083  # Meta's limit for an m.me ref parameter
# A status or message time more than this far ahead of our clock is not believed.
CLOCK_SKEW = timedelta(minutes=5)

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]+")
_WA_ID = re.compile(r"\d{5,20}")
# Graph media ids are numeric; anything else must not be spliced into a URL path.
_MEDIA_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


# --------------------------------------------------------------------------------------------
# Verification


def handshake(request: WebhookRequest) -> str:
    """Answer Meta's subscription check: the challenge, if the verify token is ours."""
    from chalicelib.config import secret

    configured = secret("meta_verify_token")
    if not configured:
        raise WebhookRejected("META_VERIFY_TOKEN is not configured")
    if request.query_value("hub.mode") != "subscribe":
        raise WebhookRejected("hub.mode is not 'subscribe'")
    offered = request.query_value("hub.verify_token") or ""
    if not hmac.compare_digest(offered.encode("utf-8"), configured.encode("utf-8")):
        raise WebhookRejected("hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = request.query_value("hub.challenge") or ""
    if not challenge or len(challenge) > MAX_CHALLENGE_CHARS:
        raise MalformedPayload("hub.challenge is missing or too long")
    return challenge


def signature(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta sends with `body`."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(request: WebhookRequest) -> None:
    """Check X-Hub-Signature-256 over the raw body; nothing else is read before this passes."""
    from chalicelib.config import secret

    app_secret = secret("meta_app_secret")
    if not app_secret:
        raise WebhookRejected("META_APP_SECRET is not configured")
    header = request.header(SIGNATURE_HEADER).strip()
    if not header:
        raise WebhookRejected("X-Hub-Signature-256 header is missing")
    match = _SIGNATURE.fullmatch(header)
    if match is None:
        raise WebhookRejected("X-Hub-Signature-256 is not 'sha256=' and 64 hex digits")
    expected = hmac.new(app_secret.encode("utf-8"), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(match.group(1).lower().encode("ascii"), expected.encode("ascii")):
        raise WebhookRejected("X-Hub-Signature-256 does not match the body")


def acknowledgement(outcome: Any) -> str:
    """Meta only needs a 200; its samples answer this text."""
    return ACKNOWLEDGEMENT


# --------------------------------------------------------------------------------------------
# Parsing: the envelope


class _Unusable(Exception):
    """One event cannot be used: it becomes a Skipped item, never an error for the batch."""


def parse(request: WebhookRequest) -> list[Any]:
    """Every event of a verified webhook body, as InboundMessage / StatusUpdate / Skipped items."""
    data = _load_json(request.body)
    kind = data.get("object")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload("'object' is required and must be a string")
    if kind not in OBJECTS:
        # A subscription the hub does not handle (user, permissions, ...): nothing to file.
        return [Skipped(f"object:{kind[:40]}", "not a messaging object")]
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("'entry' is required and must be a list")
    items: list[Any] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            items.append(Skipped("entry", f"entry[{index}] is not an object"))
        elif kind == WHATSAPP_OBJECT:
            items.extend(_whatsapp_entry(entry))
        else:
            items.extend(_messaging_entry(entry, Channel.MESSENGER if kind == PAGE_OBJECT else Channel.INSTAGRAM))
    return items


def _load_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise MalformedPayload("request body is empty; Meta sends a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        raise MalformedPayload("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("request body must be a JSON object")
    return data


def _guarded(kind: str, build: Any, *args: Any) -> list[Any]:
    """Run one event's parser; an unusable event becomes a Skipped item."""
    try:
        return list(build(*args))
    except _Unusable as exc:
        return [Skipped(kind, str(exc))]
    except ValueError as exc:  # InvalidIdentity, a pydantic ValidationError: the event's data, not ours
        return [Skipped(kind, f"unusable: {type(exc).__name__}")]


# --- Small readers: every field is checked before use ---------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any, limit: int | None = None) -> str:
    """A string field, or '' for anything else (numbers are not text: ids are always strings)."""
    if not isinstance(value, str):
        return ""
    return value[:limit] if limit is not None else value


def _id(value: Any, what: str) -> str:
    """An id Meta sends as a string (Messenger page and user ids sometimes as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _Unusable(f"{what} is missing")
    if len(value) > MAX_ID_CHARS or not _PRINTABLE_ID.fullmatch(value):
        raise _Unusable(f"{what} is not a Meta id")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def _moment(value: Any, *, milliseconds: bool) -> datetime:
    """A Meta timestamp (seconds as a string for WhatsApp, milliseconds for Messenger), never in the
    future; the time of arrival when there is none."""
    number = _number(value)
    now = utcnow()
    if number is None or number <= 0:
        return now
    seconds = number / 1000 if milliseconds else number
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return now
    return now if moment > now + CLOCK_SKEW else moment


def _media_url(media_id: str) -> str:
    """The Graph node of a WhatsApp media id: GET it with the access token for the download URL."""
    from chalicelib.config import settings

    config = settings()
    return f"{config.meta_graph_base_url.rstrip('/')}/{config.meta_graph_version}/{media_id}"


def _http_url(value: Any) -> str | None:
    text = _text(value)
    if not text or len(text) > 4096 or any(ch.isspace() for ch in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme in ("http", "https") and parts.netloc else None


# --------------------------------------------------------------------------------------------
# WhatsApp Cloud API

# Meta's delivery states for a WhatsApp message the business sent. "deleted" (the customer deleted
# a message) and "warning" (a catalog item problem) are not delivery states and are skipped.
_WHATSAPP_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,  # a voice message was played: it was certainly delivered
    "failed": DeliveryStatus.FAILED,
}
_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Events the hub knowingly does not file as messages (see `_whatsapp_message` for why).
_NOT_MESSAGES = {
    "reaction": "a reaction to a message is not a message: no agent needs waking for an emoji",
    "system": "a system notice (the customer changed number) does not move the identity by itself",
    "request_welcome": "the customer opened the chat without writing",
    "ephemeral": "disappearing messages are not delivered to the business",
}
# Meta's own markers for a real customer message it cannot show the business (polls, view-once
# media...): stored with a placeholder so an agent sees the customer wrote and can ask again.
_PLACEHOLDER_TYPES = ("unsupported", "unknown")


def _whatsapp_entry(entry: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    changes = entry.get("changes")
    if not isinstance(changes, list):
        return [Skipped("whatsapp.entry", "entry has no 'changes' list")]
    for change in changes:
        change = _dict(change)
        field = _text(change.get("field"), 60)
        value = change.get("value")
        if field != "messages":
            items.append(Skipped(f"whatsapp.{field or 'change'}", "not a messages change"))
            continue
        if not isinstance(value, dict):
            items.append(Skipped("whatsapp.messages", "change has no 'value' object"))
            continue
        items.extend(_whatsapp_value(value))
    return items


def _whatsapp_value(value: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    metadata = _dict(value.get("metadata"))
    contacts = [_dict(contact) for contact in _list(value.get("contacts"))]
    for message in _list(value.get("messages")):
        items.extend(_guarded("whatsapp.message", _whatsapp_message, _dict(message), metadata, contacts))
    for status in _list(value.get("statuses")):
        items.extend(_guarded("whatsapp.status", _whatsapp_status, _dict(status)))
    for error in _list(value.get("errors")):
        code = _dict(error).get("code")
        items.append(Skipped("whatsapp.error", f"account-level error {code!s:.20} reported by Meta"))
    if not items:
        items.append(Skipped("whatsapp.messages", "no messages or statuses in the change"))
    return items


def _business_number(metadata: dict[str, Any]) -> str:
    digits = re.sub(r"\D", "", _text(metadata.get("display_phone_number"), 40))
    return f"whatsapp:+{digits}" if digits else "whatsapp"


def _whatsapp_message(message: dict[str, Any], metadata: dict[str, Any], contacts: list[dict[str, Any]]):
    wamid = _id(message.get("id"), "message id")
    kind = _text(message.get("type"), 40) or "missing"
    if kind in _NOT_MESSAGES:
        yield Skipped(f"whatsapp.{kind}", _NOT_MESSAGES[kind])
        return
    wa_id = _text(message.get("from"), 40)
    if not _WA_ID.fullmatch(wa_id):
        raise _Unusable("'from' is not a WhatsApp id (a phone number's digits)")
    try:
        identity = phone_identity("+" + wa_id)
    except InvalidIdentity:
        raise _Unusable("'from' is not a possible phone number") from None
    body, media = _whatsapp_content(kind, message)
    if body is None:
        yield Skipped(f"whatsapp.{kind}", "not a message type the hub knows")
        return
    yield InboundMessage(
        provider=PROVIDER,
        provider_message_id=wamid,
        channel=Channel.WHATSAPP,
        sender=identity,
        sender_address=f"whatsapp:{identity.value}",
        recipient_address=_business_number(metadata),
        body=body,
        media=media,
        profile_name=_profile_name(contacts, wa_id),
        provider_account=_text(metadata.get("phone_number_id"), 64) or None,
    )


def _profile_name(contacts: list[dict[str, Any]], wa_id: str) -> str | None:
    """The sender's WhatsApp profile name: the contact with their wa_id, else the only contact."""
    matching = [contact for contact in contacts if contact.get("wa_id") == wa_id]
    chosen = matching or (contacts if len(contacts) == 1 else [])
    for contact in chosen:
        name = _text(_dict(contact.get("profile")).get("name")).strip()
        if name:
            return name[:MAX_NAME_CHARS]
    return None


def _whatsapp_content(kind: str, message: dict[str, Any]) -> tuple[str | None, list[Media]]:
    """(body, media) of a message; body None for a type the hub does not know."""
    if kind == "text":
        return _text(_dict(message.get("text")).get("body")), []
    if kind in _MEDIA_TYPES:
        return _whatsapp_media(kind, _dict(message.get(kind)))
    if kind == "location":
        return _location_text(_dict(message.get("location"))), []
    if kind == "contacts":
        return _contacts_text(_list(message.get("contacts"))), []
    if kind == "interactive":
        return _interactive_text(_dict(message.get("interactive"))), []
    if kind == "button":  # a quick-reply button of a template message
        button = _dict(message.get("button"))
        return _text(button.get("text")) or _text(button.get("payload")), []
    if kind == "order":
        order = _dict(message.get("order"))
        count = len(_list(order.get("product_items")))
        note = _text(order.get("text")).strip()
        return (f"Order: {count} item{'s' if count != 1 else ''}" + (f"\n{note}" if note else "")), []
    if kind in _PLACEHOLDER_TYPES:
        errors = _list(message.get("errors"))
        detail = _text(_dict(errors[0] if errors else {}).get("title"), 200)
        return f"[unsupported WhatsApp message{': ' + detail if detail else ''}]", []
    return None, []


def _whatsapp_media(kind: str, item: dict[str, Any]) -> tuple[str, list[Media]]:
    media_id = _text(item.get("id"))
    if not _MEDIA_ID.fullmatch(media_id):
        raise _Unusable(f"the {kind} has no usable media id")
    content_type = _text(item.get("mime_type"), 100).split(";", 1)[0].strip() or None
    filename = _text(item.get("filename"), 255).strip() or None
    media = Media(url=_media_url(media_id), content_type=content_type, filename=filename)
    return _text(item.get("caption")), [media]


def _location_text(location: dict[str, Any]) -> str:
    latitude, longitude = _number(location.get("latitude")), _number(location.get("longitude"))
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        raise _Unusable("the location has no usable latitude and longitude")
    label = ", ".join(part for part in (_text(location.get(key), 300).strip() for key in ("name", "address")) if part)
    text = f"Location: {_coordinate(latitude)},{_coordinate(longitude)}"
    return f"{text} ({label})" if label else text


def _coordinate(value: float) -> str:
    """Degrees to 7 places (about a centimetre), without trailing zeros."""
    return f"{value:.7f}".rstrip("0").rstrip(".")


def _contacts_text(cards: list[Any]) -> str:
    lines = []
    for card in cards[:20]:
        card = _dict(card)
        name = _text(_dict(card.get("name")).get("formatted_name"), MAX_NAME_CHARS).strip()
        phones = [_text(_dict(phone).get("phone"), 40).strip() for phone in _list(card.get("phones"))[:5]]
        emails = [_text(_dict(email).get("email"), 200).strip() for email in _list(card.get("emails"))[:5]]
        details = ", ".join(part for part in (name, *phones, *emails) if part)
        if details:
            lines.append(f"Contact: {details}")
    if not lines:
        raise _Unusable("the shared contacts carry no name, phone or email")
    return "\n".join(lines)


def _interactive_text(interactive: dict[str, Any]) -> str | None:
    kind = _text(interactive.get("type"), 40)
    if kind in ("button_reply", "list_reply"):
        reply = _dict(interactive.get(kind))
        return _text(reply.get("title")) or _text(reply.get("id"))
    if kind == "nfm_reply":  # a WhatsApp Flow was completed: its summary text
        return _text(_dict(interactive.get("nfm_reply")).get("body")) or "[form submitted]"
    return None


def _whatsapp_status(status: dict[str, Any]):
    wamid = _id(status.get("id"), "status message id")
    raw = _text(status.get("status"), 40).lower()
    mapped = _WHATSAPP_STATUSES.get(raw)
    if mapped is None:
        yield Skipped(f"whatsapp.status.{raw or 'missing'}", "not a delivery status")
        return
    code, message = _status_error(_list(status.get("errors")))
    yield StatusUpdate(
        provider=PROVIDER,
        provider_message_id=wamid,
        status=mapped,
        error_code=code,
        error_message=message,
        occurred_at=_moment(status.get("timestamp"), milliseconds=False),
    )


def _status_error(errors: list[Any]) -> tuple[str | None, str | None]:
    if not errors:
        return None, None
    error = _dict(errors[0])
    code = error.get("code")
    code_text = str(code) if isinstance(code, int) and not isinstance(code, bool) else _text(code, 40) or None
    title = (_text(error.get("title")) or _text(error.get("message"))).strip()
    details = _text(_dict(error.get("error_data")).get("details")).strip()
    text = f"{title}: {details}" if title and details and details != title else (title or details)
    return code_text, (text[:MAX_ERROR_CHARS] or None)


# --------------------------------------------------------------------------------------------
# Messenger and Instagram

# Events with nothing to file, by the key that names them.
_SKIPPED_EVENTS = {
    "read": "a read watermark cannot be matched to messages",
    "reaction": "a reaction to a message is not a message",
    "optin": "an opt-in carries no message",
    "account_linking": "account linking carries no message",
    "pass_thread_control": "handover protocol",
    "take_thread_control": "handover protocol",
    "request_thread_control": "handover protocol",
    "policy_enforcement": "a policy notice for the page",
    "message_edit": "an edit of an earlier message",
    "game_play": "a game event",
}


def _messaging_entry(entry: dict[str, Any], channel: Channel) -> list[Any]:
    prefix = channel.value
    items: list[Any] = []
    events = entry.get("messaging")
    if events is None:
        if "standby" in entry:
            return [Skipped(f"{prefix}.standby", "another app controls the thread (standby channel)")]
        if "changes" in entry:
            return [Skipped(f"{prefix}.changes", "not a messaging event (feed, comments...)")]
        return [Skipped(f"{prefix}.entry", "entry has no 'messaging' list")]
    if not isinstance(events, list):
        return [Skipped(f"{prefix}.entry", "'messaging' is not a list")]
    for event in events:
        items.extend(_guarded(f"{prefix}.event", _messaging_event, _dict(event), channel))
    return items


def _messaging_event(event: dict[str, Any], channel: Channel):
    prefix = channel.value
    if isinstance(event.get("delivery"), dict):
        yield from _deliveries(event["delivery"], channel)
        return
    if channel is Channel.INSTAGRAM and isinstance(event.get("read"), dict):
        # Instagram's "seen" names the message it covers; Messenger's is only a watermark.
        yield from _instagram_read(event["read"], event)
        return
    message = event.get("message")
    if isinstance(message, dict) and message.get("is_echo") is True:
        yield Skipped(f"{prefix}.echo", "the page's own message, echoed back")
        return
    if isinstance(message, dict):
        yield from _chat_message(event, message, channel)
        return
    if isinstance(event.get("postback"), dict):
        yield from _postback(event, event["postback"], channel)
        return
    if isinstance(event.get("referral"), dict):
        yield from _referral(event, event["referral"], channel)
        return
    known = next((key for key in _SKIPPED_EVENTS if key in event), None)
    if known is not None:
        yield Skipped(f"{prefix}.{known}", _SKIPPED_EVENTS[known])
        return
    kinds = sorted(key for key in event if key not in ("sender", "recipient", "timestamp"))
    yield Skipped(f"{prefix}.{(kinds[0] if kinds else 'empty')[:40]}", "not an event the hub files")


def _sender(event: dict[str, Any], channel: Channel) -> tuple[str, Any]:
    """(user id, identity) of the customer who caused the event."""
    sender = _dict(event.get("sender"))
    if "id" not in sender and "user_ref" in sender:
        raise _Unusable("a chat plugin user_ref is not a page-scoped id the hub can answer")
    user_id = _id(sender.get("id"), "sender.id")
    try:
        return user_id, user_id_identity(channel.value, user_id)
    except InvalidIdentity as exc:
        raise _Unusable(str(exc)) from None


def _page_address(event: dict[str, Any], channel: Channel) -> str:
    recipient = _dict(event.get("recipient"))
    try:
        return f"{channel.value}:{_id(recipient.get('id'), 'recipient.id')}"
    except _Unusable:
        return channel.value


def _inbound(event: dict[str, Any], channel: Channel, message_id: str, body: str, **extra: Any) -> InboundMessage:
    user_id, identity = _sender(event, channel)
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=message_id,
        channel=channel,
        sender=identity,
        sender_address=f"{channel.value}:{user_id}",
        recipient_address=_page_address(event, channel),
        body=body,
        provider_account=_text(_dict(event.get("recipient")).get("id"), 64) or None,
        **extra,
    )


def _chat_message(event: dict[str, Any], message: dict[str, Any], channel: Channel):
    mid = _id(message.get("mid"), "message.mid")
    if message.get("is_deleted") is True:
        yield Skipped(f"{channel.value}.deleted", "the customer unsent a message")
        return
    text = _text(message.get("text"))
    if not text:
        text = _text(_dict(message.get("quick_reply")).get("payload"))
    media = _attachments(_list(message.get("attachments")))
    if not text and not media:
        if message.get("is_unsupported") is True or message.get("attachments") is not None:
            text = f"[unsupported {channel.value.capitalize()} message]"
        else:
            raise _Unusable("the message has no text and no attachment")
    yield _inbound(event, channel, mid, text, media=media)


def _attachments(attachments: list[Any]) -> list[Media]:
    media = []
    for attachment in attachments[:10]:
        attachment = _dict(attachment)
        payload = _dict(attachment.get("payload"))
        url = _http_url(payload.get("url")) or _http_url(attachment.get("url"))
        if url is None:
            continue  # a template echo, a sticker without URL, a "fallback" without payload
        media.append(Media(url=url, filename=_filename(url, _text(payload.get("title"), 255))))
    return media


def _filename(url: str, title: str) -> str | None:
    """The attachment's file name: the title Meta gives, else the last part of the URL's path."""
    if title.strip():
        return title.strip()
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    last = unquote(path.rsplit("/", 1)[-1])[:255]
    return last or None


def _postback(event: dict[str, Any], postback: dict[str, Any], channel: Channel):
    """A button tap (Get Started, persistent menu, a template button): its title is what the
    customer chose; a Get Started after an m.me link carries the link's `ref`."""
    referral = _dict(postback.get("referral"))
    ref = _ref(referral.get("ref"))
    mid = postback.get("mid")
    message_id = _id(mid, "postback.mid") if mid is not None else _synthetic_id("postback", event, channel)
    body = _text(postback.get("title")) or _text(postback.get("payload"))
    yield _inbound(event, channel, message_id, body, link_code=ref)


def _referral(event: dict[str, Any], referral: dict[str, Any], channel: Channel):
    """An m.me / ig.me link with `?ref=` opened an existing thread: no message, but the ref may be
    the hub's handoff code. Filed as an empty message carrying the code, with an id made from the
    sender and time (Meta gives none), so a redelivery is still recognised."""
    ref = _ref(referral.get("ref"))
    if ref is None:
        yield Skipped(f"{channel.value}.referral", "a referral without a ref parameter (an ad, a QR code)")
        return
    yield _inbound(event, channel, _synthetic_id("referral", event, channel), "", link_code=ref)


def _ref(value: Any) -> str | None:
    ref = _text(value).strip()
    if not ref:
        return None
    if len(ref) > MAX_REF_CHARS:
        raise _Unusable("the referral ref is longer than Meta allows")
    return ref


def _synthetic_id(kind: str, event: dict[str, Any], channel: Channel) -> str:
    user_id, _ = _sender(event, channel)
    timestamp = event.get("timestamp")
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp <= 0:
        raise _Unusable(f"a {kind} without a timestamp cannot be told apart from its redelivery")
    return f"{kind}:{user_id}:{timestamp}"


def _deliveries(delivery: dict[str, Any], channel: Channel):
    mids = _list(delivery.get("mids"))
    if not mids:
        yield Skipped(f"{channel.value}.delivery", "a delivery watermark without message ids")
        return
    occurred_at = _moment(delivery.get("watermark"), milliseconds=True)
    for mid in mids[:100]:
        try:
            message_id = _id(mid, "delivery mid")
        except _Unusable as exc:
            yield Skipped(f"{channel.value}.delivery", str(exc))
            continue
        yield StatusUpdate(
            provider=PROVIDER, provider_message_id=message_id, status=DeliveryStatus.DELIVERED, occurred_at=occurred_at
        )


def _instagram_read(read: dict[str, Any], event: dict[str, Any]):
    mid = _id(read.get("mid"), "read.mid")
    yield StatusUpdate(
        provider=PROVIDER,
        provider_message_id=mid,
        status=DeliveryStatus.READ,
        occurred_at=_moment(event.get("timestamp"), milliseconds=True),
    )


# --------------------------------------------------------------------------------------------
# Sending

DEFAULT_GRAPH_BASE_URL = "https://graph.facebook.com"
MAX_ERROR_BODY_BYTES = 64 * 1024
# Graph error codes that mean "not now" rather than "never": Meta's throttling codes (4, 17, 32,
# 613, 80007, WhatsApp 130429 throughput and 131056 pair rate), and its transient server errors
# (1 unknown, 2 service, 131000 something went wrong, 131016 service unavailable, 133004 server
# temporarily unavailable). They are answered with HTTP 400 as often as 5xx.
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004})

_WHATSAPP_MEDIA_BY_EXTENSION = {
    **dict.fromkeys(("jpg", "jpeg", "png"), "image"),
    **dict.fromkeys(("mp4", "3gp"), "video"),
    **dict.fromkeys(("aac", "amr", "mp3", "m4a", "ogg", "opus"), "audio"),
}
_MESSENGER_MEDIA_BY_EXTENSION = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp", "bmp"), "image"),
    **dict.fromkeys(("mp4", "mov", "avi", "webm", "3gp", "mkv"), "video"),
    **dict.fromkeys(("mp3", "m4a", "aac", "wav", "ogg", "opus"), "audio"),
}
# Instagram takes images, videos and audio; any other file goes as a link in a text message.
_INSTAGRAM_ATTACHMENT_TYPES = ("image", "video", "audio")
_CAPTIONED = ("image", "video", "document")


def missing_settings(channel: str) -> list[str]:
    """What a send on `channel` still needs."""
    from chalicelib.config import secret, settings

    config = settings()
    needed = {"META_ACCESS_TOKEN": secret("meta_access_token")}
    if channel == Channel.WHATSAPP.value:
        needed["META_WHATSAPP_PHONE_NUMBER_ID"] = config.meta_whatsapp_phone_number_id
    elif channel == Channel.MESSENGER.value:
        needed["META_PAGE_ID"] = config.meta_page_id
    elif channel == Channel.INSTAGRAM.value:
        needed["META_INSTAGRAM_ACCOUNT_ID"] = config.meta_instagram_account_id
    else:
        return [f"(meta does not send on {channel})"]
    return [name for name, value in needed.items() if not value.strip()]


def send(outgoing: Outgoing) -> SentMessage:
    """Send one message through the Graph API; ProviderRejected / ProviderUnavailable otherwise."""
    if outgoing.channel == Channel.WHATSAPP.value:
        return _send_whatsapp(outgoing)
    if outgoing.channel in (Channel.MESSENGER.value, Channel.INSTAGRAM.value):
        return _send_page(outgoing)
    raise ProviderRejected(PROVIDER, "unsupported_channel", f"meta does not send on {outgoing.channel}", 400)


def _graph() -> tuple[str, str]:
    """(base URL with version, access token)."""
    from chalicelib.config import secret, settings

    token = secret("meta_access_token")
    if not token:
        raise ProviderUnavailable(PROVIDER, "META_ACCESS_TOKEN is not configured")
    config = settings()
    return f"{config.meta_graph_base_url.rstrip('/')}/{config.meta_graph_version.strip('/')}", token


def _extension(url: str) -> str:
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    last = path.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[-1].lower() if "." in last else ""


# --- WhatsApp ----------------------------------------------------------------------------------


def _whatsapp_to(recipient: str) -> str:
    """The Cloud API's `to`: the E.164 number's digits, without '+'."""
    from chalicelib.domain.identity import normalize_phone

    try:
        return normalize_phone(recipient).lstrip("+")
    except InvalidIdentity:
        raise ProviderRejected(PROVIDER, "invalid_recipient", "the recipient is not a phone number", 400) from None


def whatsapp_payloads(outgoing: Outgoing, to: str) -> list[dict[str, Any]]:
    """The request bodies one outgoing message takes, in order: one, or a text before an audio or
    sticker (which carry no caption). A template replaces everything else."""
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if outgoing.template:
        language = {"code": outgoing.template_language or "en_US"}
        template: dict[str, Any] = {"name": outgoing.template, "language": language}
        if outgoing.template_parameters:
            parameters = [{"type": "text", "text": value} for value in outgoing.template_parameters]
            template["components"] = [{"type": "body", "parameters": parameters}]
        return [{**base, "type": "template", "template": template}]
    payloads: list[dict[str, Any]] = []
    caption = outgoing.body
    for url in outgoing.media_urls:
        kind = _WHATSAPP_MEDIA_BY_EXTENSION.get(_extension(url), "document")
        media: dict[str, Any] = {"link": url}
        if kind == "document":
            name = _filename(url, "")
            if name:
                media["filename"] = name
        if caption and kind in _CAPTIONED:
            media["caption"] = caption
            caption = ""
        payloads.append({**base, "type": kind, kind: media})
    if caption:  # no media, or media that cannot carry it: the text goes first
        payloads.insert(0, {**base, "type": "text", "text": {"body": caption, "preview_url": False}})
    return payloads


def _send_whatsapp(outgoing: Outgoing) -> SentMessage:
    from chalicelib.config import settings

    config = settings()
    base_url, token = _graph()
    to = _whatsapp_to(outgoing.recipient)
    url = f"{base_url}/{config.meta_whatsapp_phone_number_id}/messages"
    message_id = _send_all(url, token, whatsapp_payloads(outgoing, to), outgoing.timeout, _whatsapp_message_id)
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=message_id,
        status=DeliveryStatus.ACCEPTED,  # Meta accepted it; "sent" arrives as a status webhook
        sender_address=config.meta_whatsapp_number or config.meta_whatsapp_phone_number_id,
        recipient_address=outgoing.recipient,
    )


def _whatsapp_message_id(answer: dict[str, Any]) -> str | None:
    messages = _list(answer.get("messages"))
    if not messages:
        return None
    return _text(_dict(messages[0]).get("id"), MAX_ID_CHARS) or None


# --- Messenger and Instagram ---------------------------------------------------------------------


def page_payloads(outgoing: Outgoing) -> list[dict[str, Any]]:
    """The Send API bodies one outgoing message takes: the text, then each attachment."""
    base: dict[str, Any] = {"recipient": {"id": outgoing.recipient}}
    if outgoing.message_tag:
        base.update(messaging_type="MESSAGE_TAG", tag=outgoing.message_tag)
    else:
        base["messaging_type"] = "RESPONSE"
    messages: list[dict[str, Any]] = [{"text": outgoing.body}] if outgoing.body else []
    for url in outgoing.media_urls:
        kind = _MESSENGER_MEDIA_BY_EXTENSION.get(_extension(url), "file")
        if outgoing.channel == Channel.INSTAGRAM.value and kind not in _INSTAGRAM_ATTACHMENT_TYPES:
            messages.append({"text": url})
            continue
        messages.append({"attachment": {"type": kind, "payload": {"url": url, "is_reusable": False}}})
    return [{**base, "message": message} for message in messages]


def _send_page(outgoing: Outgoing) -> SentMessage:
    from chalicelib.config import settings

    config = settings()
    base_url, token = _graph()
    if not _PRINTABLE_ID.fullmatch(outgoing.recipient) or len(outgoing.recipient) > MAX_ID_CHARS:
        raise ProviderRejected(PROVIDER, "invalid_recipient", f"not a {outgoing.channel} user id", 400)
    if outgoing.channel == Channel.MESSENGER.value:
        node = config.meta_page_id or "me"
    else:
        node = config.meta_instagram_account_id or "me"
    url = f"{base_url}/{node}/messages"
    message_id = _send_all(url, token, page_payloads(outgoing), outgoing.timeout, _page_message_id)
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=message_id,
        status=DeliveryStatus.ACCEPTED,
        sender_address=f"{outgoing.channel}:{node}",
        recipient_address=outgoing.recipient,
    )


def _page_message_id(answer: dict[str, Any]) -> str | None:
    return _text(answer.get("message_id"), MAX_ID_CHARS) or None


# --- HTTP -------------------------------------------------------------------------------------------


def _send_all(url: str, token: str, payloads: list[dict[str, Any]], timeout: float, read_id: Any) -> str:
    """POST each body in turn; the first message's id identifies the reply.

    When a later part fails after an earlier one was accepted, part of the reply is with the
    customer already: retrying would send that part twice, so it is reported as refused (stored as
    failed, saying what went out) rather than unavailable."""
    if not payloads:
        raise ProviderRejected(PROVIDER, "empty_message", "nothing to send: no text, media or template", 400)
    first: str | None = None
    for index, payload in enumerate(payloads):
        try:
            answer, status = _post(url, token, payload, timeout)
            message_id = read_id(answer)
            if message_id is None:
                raise ProviderRejected(PROVIDER, "invalid_response", "Meta's answer has no message id", status)
        except ProviderRejected as exc:
            if first is None:
                raise
            raise _partial(exc.code, exc.message, exc.http_status, index, len(payloads), first) from None
        except ProviderUnavailable as exc:
            if first is None:
                raise
            raise _partial("partial_send", exc.reason, 503, index, len(payloads), first) from None
        first = first or message_id
    assert first is not None
    return first


def _partial(code: str, reason: str, http_status: int, index: int, total: int, first: str) -> ProviderRejected:
    text = f"part {index + 1} of {total} was not sent ({reason}); the earlier part went out as {first}"
    return ProviderRejected(PROVIDER, code, text, http_status)


def _post(url: str, token: str, payload: dict[str, Any], timeout: float) -> tuple[dict[str, Any], int]:
    """(JSON answer, HTTP status) of a Graph POST. The token travels in the header only, and no
    error message carries the URL or the token."""
    from chalicelib.channels.http_json import post_json

    answer = post_json(
        PROVIDER,
        url,
        payload,
        timeout=timeout,
        api_base_url=DEFAULT_GRAPH_BASE_URL,
        base_url_setting="META_GRAPH_BASE_URL",
        max_bytes=MAX_ERROR_BODY_BYTES,
        headers={"Authorization": f"Bearer {token}"},
    )
    if not answer.ok:
        raise _graph_error(answer.status, answer.body)
    data = answer.json() if answer.body else {}
    if not isinstance(data, dict):
        raise ProviderRejected(PROVIDER, "invalid_response", "Meta's answer is not a JSON object", answer.status)
    return data, answer.status


def _graph_error(status: int, raw: bytes) -> ProviderRejected | ProviderUnavailable:
    """A Graph error answer: `{"error": {"message", "type", "code", "error_subcode", "error_data",
    "fbtrace_id"}}`."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        data = {}
    error = _dict(_dict(data).get("error"))
    code = error.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if status == 429 or status >= 500 or code in TRANSIENT_CODES or error.get("is_transient") is True:
        return ProviderUnavailable(PROVIDER, f"HTTP {status}" + (f" (error {code})" if code is not None else ""))
    message = _text(error.get("message")).strip() or f"HTTP {status}"
    details = _text(_dict(error.get("error_data")).get("details")).strip()
    if details and details not in message:
        message = f"{message}: {details}"
    code_text = str(code) if code is not None else f"http_{status}"
    return ProviderRejected(PROVIDER, code_text, message[:MAX_ERROR_CHARS], status)
