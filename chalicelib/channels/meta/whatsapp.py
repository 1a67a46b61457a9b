"""WhatsApp Cloud API changes: customers' messages and the statuses of what the hub sent.

`entry[].changes[].value` carries `messages[]` (from customers) and `statuses[]` (receipts for what
the hub sent), often both in one envelope. A WhatsApp user is known by their phone number
(`wa_id`), so they are the same customer as that number on SMS or on Twilio's WhatsApp. Media
arrive as a Graph media id, not a URL: the stored `Media.url` is the media node
`{graph}/{version}/{media-id}`, which answers (with the access token) the short-lived download URL;
the mime type, filename and caption come with the event.

An event the hub has no use for (reactions, system notices, unknown kinds) or cannot use (a
missing id, a malformed field) is `Skipped` on its own.
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.channels.meta.fields import (
    MAX_ERROR_CHARS,
    MAX_NAME_CHARS,
    PROVIDER,
    Unusable,
    as_dict,
    as_id,
    as_list,
    as_number,
    as_text,
    guarded,
    moment_of,
)
from chalicelib.domain.identity import InvalidIdentity, phone_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, StatusUpdate
from chalicelib.domain.surveys import CHOICE_ID_PREFIX
from chalicelib.domain.webhook_items import Skipped

_WA_ID = re.compile(r"\d{5,20}")
# Graph media ids are numeric; anything else must not be spliced into a URL path.
_MEDIA_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

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


def entry_items(entry: dict[str, Any]) -> list[Any]:
    """The items of one `whatsapp_business_account` entry: its `messages` changes, change by change."""
    items: list[Any] = []
    changes = entry.get("changes")
    if not isinstance(changes, list):
        return [Skipped("whatsapp.entry", "entry has no 'changes' list")]
    for change in changes:
        change = as_dict(change)
        field = as_text(change.get("field"), 60)
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
    metadata = as_dict(value.get("metadata"))
    contacts = [as_dict(contact) for contact in as_list(value.get("contacts"))]
    for message in as_list(value.get("messages")):
        items.extend(guarded("whatsapp.message", _whatsapp_message, as_dict(message), metadata, contacts))
    for status in as_list(value.get("statuses")):
        items.extend(guarded("whatsapp.status", _whatsapp_status, as_dict(status)))
    for error in as_list(value.get("errors")):
        code = as_dict(error).get("code")
        items.append(Skipped("whatsapp.error", f"account-level error {code!s:.20} reported by Meta"))
    if not items:
        items.append(Skipped("whatsapp.messages", "no messages or statuses in the change"))
    return items


def _business_number(metadata: dict[str, Any]) -> str:
    digits = re.sub(r"\D", "", as_text(metadata.get("display_phone_number"), 40))
    return f"whatsapp:+{digits}" if digits else "whatsapp"


def _whatsapp_message(message: dict[str, Any], metadata: dict[str, Any], contacts: list[dict[str, Any]]):
    wamid = as_id(message.get("id"), "message id")
    kind = as_text(message.get("type"), 40) or "missing"
    if kind in _NOT_MESSAGES:
        yield Skipped(f"whatsapp.{kind}", _NOT_MESSAGES[kind])
        return
    wa_id = as_text(message.get("from"), 40)
    if not _WA_ID.fullmatch(wa_id):
        raise Unusable("'from' is not a WhatsApp id (a phone number's digits)")
    try:
        identity = phone_identity("+" + wa_id)
    except InvalidIdentity:
        raise Unusable("'from' is not a possible phone number") from None
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
        provider_account=as_text(metadata.get("phone_number_id"), 64) or None,
    )


def _profile_name(contacts: list[dict[str, Any]], wa_id: str) -> str | None:
    """The sender's WhatsApp profile name: the contact with their wa_id, else the only contact."""
    matching = [contact for contact in contacts if contact.get("wa_id") == wa_id]
    chosen = matching or (contacts if len(contacts) == 1 else [])
    for contact in chosen:
        name = as_text(as_dict(contact.get("profile")).get("name")).strip()
        if name:
            return name[:MAX_NAME_CHARS]
    return None


def _whatsapp_content(kind: str, message: dict[str, Any]) -> tuple[str | None, list[Media]]:
    """(body, media) of a message; body None for a type the hub does not know."""
    if kind == "text":
        return as_text(as_dict(message.get("text")).get("body")), []
    if kind in _MEDIA_TYPES:
        return _whatsapp_media(kind, as_dict(message.get(kind)))
    if kind == "location":
        return _location_text(as_dict(message.get("location"))), []
    if kind == "contacts":
        return _contacts_text(as_list(message.get("contacts"))), []
    if kind == "interactive":
        return _interactive_text(as_dict(message.get("interactive"))), []
    if kind == "button":  # a quick-reply button of a template message
        button = as_dict(message.get("button"))
        return as_text(button.get("text")) or as_text(button.get("payload")), []
    if kind == "order":
        order = as_dict(message.get("order"))
        count = len(as_list(order.get("product_items")))
        note = as_text(order.get("text")).strip()
        return (f"Order: {count} item{'s' if count != 1 else ''}" + (f"\n{note}" if note else "")), []
    if kind in _PLACEHOLDER_TYPES:
        errors = as_list(message.get("errors"))
        detail = as_text(as_dict(errors[0] if errors else {}).get("title"), 200)
        return f"[unsupported WhatsApp message{': ' + detail if detail else ''}]", []
    return None, []


def _whatsapp_media(kind: str, item: dict[str, Any]) -> tuple[str, list[Media]]:
    media_id = as_text(item.get("id"))
    if not _MEDIA_ID.fullmatch(media_id):
        raise Unusable(f"the {kind} has no usable media id")
    content_type = as_text(item.get("mime_type"), 100).split(";", 1)[0].strip() or None
    filename = as_text(item.get("filename"), 255).strip() or None
    media = Media(url=_media_url(media_id), content_type=content_type, filename=filename)
    return as_text(item.get("caption")), [media]


def _media_url(media_id: str) -> str:
    """The Graph node of a WhatsApp media id: GET it with the access token for the download URL."""
    from chalicelib.config import settings

    config = settings()
    return f"{config.meta_graph_base_url.rstrip('/')}/{config.meta_graph_version}/{media_id}"


def _location_text(location: dict[str, Any]) -> str:
    latitude, longitude = as_number(location.get("latitude")), as_number(location.get("longitude"))
    if latitude is None or longitude is None or abs(latitude) > 90 or abs(longitude) > 180:
        raise Unusable("the location has no usable latitude and longitude")
    label = ", ".join(part for part in (as_text(location.get(key), 300).strip() for key in ("name", "address")) if part)
    text = f"Location: {_coordinate(latitude)},{_coordinate(longitude)}"
    return f"{text} ({label})" if label else text


def _coordinate(value: float) -> str:
    """Degrees to 7 places (about a centimetre), without trailing zeros."""
    return f"{value:.7f}".rstrip("0").rstrip(".")


def _contacts_text(cards: list[Any]) -> str:
    lines = []
    for card in cards[:20]:
        card = as_dict(card)
        name = as_text(as_dict(card.get("name")).get("formatted_name"), MAX_NAME_CHARS).strip()
        phones = [as_text(as_dict(phone).get("phone"), 40).strip() for phone in as_list(card.get("phones"))[:5]]
        emails = [as_text(as_dict(email).get("email"), 200).strip() for email in as_list(card.get("emails"))[:5]]
        details = ", ".join(part for part in (name, *phones, *emails) if part)
        if details:
            lines.append(f"Contact: {details}")
    if not lines:
        raise Unusable("the shared contacts carry no name, phone or email")
    return "\n".join(lines)


def _interactive_text(interactive: dict[str, Any]) -> str | None:
    kind = as_text(interactive.get("type"), 40)
    if kind in ("button_reply", "list_reply"):
        reply = as_dict(interactive.get(kind))
        choice_id = as_text(reply.get("id"), 200)
        if choice_id.startswith(CHOICE_ID_PREFIX):
            # One of the hub's own choices (a survey rating): its id is the answer, since the title
            # WhatsApp echoes was cut to 24 characters and may no longer match the label.
            return choice_id
        return as_text(reply.get("title")) or choice_id
    if kind == "nfm_reply":  # a WhatsApp Flow was completed: its summary text
        return as_text(as_dict(interactive.get("nfm_reply")).get("body")) or "[form submitted]"
    return None


def _whatsapp_status(status: dict[str, Any]):
    wamid = as_id(status.get("id"), "status message id")
    raw = as_text(status.get("status"), 40).lower()
    mapped = _WHATSAPP_STATUSES.get(raw)
    if mapped is None:
        yield Skipped(f"whatsapp.status.{raw or 'missing'}", "not a delivery status")
        return
    code, message = _status_error(as_list(status.get("errors")))
    yield StatusUpdate(
        provider=PROVIDER,
        provider_message_id=wamid,
        status=mapped,
        error_code=code,
        error_message=message,
        occurred_at=moment_of(status.get("timestamp"), milliseconds=False),
    )


def _status_error(errors: list[Any]) -> tuple[str | None, str | None]:
    if not errors:
        return None, None
    error = as_dict(errors[0])
    code = error.get("code")
    code_text = str(code) if isinstance(code, int) and not isinstance(code, bool) else as_text(code, 40) or None
    title = (as_text(error.get("title")) or as_text(error.get("message"))).strip()
    details = as_text(as_dict(error.get("error_data")).get("details")).strip()
    text = f"{title}: {details}" if title and details and details != title else (title or details)
    return code_text, (text[:MAX_ERROR_CHARS] or None)
