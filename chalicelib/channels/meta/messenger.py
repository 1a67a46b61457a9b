"""Messenger (`page`) and Instagram messaging events.

`entry[].messaging[]` holds one event each: `message`, `postback`, `referral` (an m.me/ig.me `?ref=`
link: the hub's handoff code), `delivery` (mids), `read`, `reaction` and so on. Customers are known
by their page-scoped ids (PSID / IGSID).

An event the hub has no use for (reactions, echoes of the page's own sends, read watermarks,
typing, unknown kinds) or cannot use (a missing id, a malformed field) is `Skipped` on its own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from chalicelib.channels.meta.fields import (
    PROVIDER,
    Unusable,
    as_dict,
    as_id,
    as_list,
    as_text,
    filename_of,
    guarded,
    moment_of,
)
from chalicelib.domain.identity import InvalidIdentity, user_id_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, StatusUpdate
from chalicelib.domain.surveys import CHOICE_ID_PREFIX
from chalicelib.domain.webhook_items import Skipped

MAX_REF_CHARS = 2083  # Meta's limit for an m.me ref parameter

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


def entry_items(entry: dict[str, Any], channel: Channel) -> list[Any]:
    """The items of one `page` (Messenger) or `instagram` entry, event by event."""
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
        items.extend(guarded(f"{prefix}.event", _messaging_event, as_dict(event), channel))
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
    sender = as_dict(event.get("sender"))
    if "id" not in sender and "user_ref" in sender:
        raise Unusable("a chat plugin user_ref is not a page-scoped id the hub can answer")
    user_id = as_id(sender.get("id"), "sender.id")
    try:
        return user_id, user_id_identity(channel.value, user_id)
    except InvalidIdentity as exc:
        raise Unusable(str(exc)) from None


def _page_address(event: dict[str, Any], channel: Channel) -> str:
    recipient = as_dict(event.get("recipient"))
    try:
        return f"{channel.value}:{as_id(recipient.get('id'), 'recipient.id')}"
    except Unusable:
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
        provider_account=as_text(as_dict(event.get("recipient")).get("id"), 64) or None,
        **extra,
    )


def _chat_message(event: dict[str, Any], message: dict[str, Any], channel: Channel):
    mid = as_id(message.get("mid"), "message.mid")
    if message.get("is_deleted") is True:
        yield Skipped(f"{channel.value}.deleted", "the customer unsent a message")
        return
    text = as_text(message.get("text"))
    payload = as_text(as_dict(message.get("quick_reply")).get("payload"), 1000)
    if payload.startswith(CHOICE_ID_PREFIX):
        # A tap on one of the hub's own quick replies (a survey rating): the payload is the answer,
        # since `text` is the title Meta cut to 20 characters and may no longer match the label.
        text = payload
    elif not text:
        text = payload
    media = _attachments(as_list(message.get("attachments")))
    if not text and not media:
        if message.get("is_unsupported") is True or message.get("attachments") is not None:
            text = f"[unsupported {channel.value.capitalize()} message]"
        else:
            raise Unusable("the message has no text and no attachment")
    yield _inbound(event, channel, mid, text, media=media)


def _attachments(attachments: list[Any]) -> list[Media]:
    media = []
    for attachment in attachments[:10]:
        attachment = as_dict(attachment)
        payload = as_dict(attachment.get("payload"))
        url = _http_url(payload.get("url")) or _http_url(attachment.get("url"))
        if url is None:
            continue  # a template echo, a sticker without URL, a "fallback" without payload
        media.append(Media(url=url, filename=filename_of(url, as_text(payload.get("title"), 255))))
    return media


def _http_url(value: Any) -> str | None:
    text = as_text(value)
    if not text or len(text) > 4096 or any(ch.isspace() for ch in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme in ("http", "https") and parts.netloc else None


def _postback(event: dict[str, Any], postback: dict[str, Any], channel: Channel):
    """A button tap (Get Started, persistent menu, a template button): its title is what the
    customer chose; a Get Started after an m.me link carries the link's `ref`."""
    referral = as_dict(postback.get("referral"))
    ref = _ref(referral.get("ref"))
    mid = postback.get("mid")
    message_id = as_id(mid, "postback.mid") if mid is not None else _synthetic_id("postback", event, channel)
    payload = as_text(postback.get("payload"), 1000)
    # The hub's own choice (a survey rating) answers by its payload, like a quick reply.
    body = payload if payload.startswith(CHOICE_ID_PREFIX) else as_text(postback.get("title")) or payload
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
    ref = as_text(value).strip()
    if not ref:
        return None
    if len(ref) > MAX_REF_CHARS:
        raise Unusable("the referral ref is longer than Meta allows")
    return ref


def _synthetic_id(kind: str, event: dict[str, Any], channel: Channel) -> str:
    user_id, _ = _sender(event, channel)
    timestamp = event.get("timestamp")
    if isinstance(timestamp, str) and timestamp.isdigit():
        timestamp = int(timestamp)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp <= 0:
        raise Unusable(f"a {kind} without a timestamp cannot be told apart from its redelivery")
    return f"{kind}:{user_id}:{timestamp}"


def _deliveries(delivery: dict[str, Any], channel: Channel):
    mids = as_list(delivery.get("mids"))
    if not mids:
        yield Skipped(f"{channel.value}.delivery", "a delivery watermark without message ids")
        return
    occurred_at = moment_of(delivery.get("watermark"), milliseconds=True)
    for mid in mids[:100]:
        try:
            message_id = as_id(mid, "delivery mid")
        except Unusable as exc:
            yield Skipped(f"{channel.value}.delivery", str(exc))
            continue
        yield StatusUpdate(
            provider=PROVIDER, provider_message_id=message_id, status=DeliveryStatus.DELIVERED, occurred_at=occurred_at
        )


def _instagram_read(read: dict[str, Any], event: dict[str, Any]):
    mid = as_id(read.get("mid"), "read.mid")
    yield StatusUpdate(
        provider=PROVIDER,
        provider_message_id=mid,
        status=DeliveryStatus.READ,
        occurred_at=moment_of(event.get("timestamp"), milliseconds=True),
    )
