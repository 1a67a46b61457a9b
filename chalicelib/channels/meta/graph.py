"""Sending through the Graph API with the system user's access token: WhatsApp to
`/{phone-number-id}/messages`, Messenger to `/{page-id}/messages`, Instagram to
`/{instagram-account-id}/messages`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from chalicelib.channels.base import Outgoing
from chalicelib.channels.meta.fields import (
    MAX_ERROR_CHARS,
    MAX_ID_CHARS,
    PRINTABLE_ID,
    PROVIDER,
    as_dict,
    as_list,
    as_text,
    filename_of,
)
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import InvalidIdentity
from chalicelib.domain.messages import Channel, DeliveryStatus
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage

DEFAULT_GRAPH_BASE_URL = "https://graph.facebook.com"
# What Meta takes: one attachment per message; WhatsApp Cloud API 4,096 characters and templates
# after its 24-hour window; Messenger 2,000 and Instagram 1,000 characters, 24 hours, then a human
# agent may answer for 7 days with the HUMAN_AGENT tag.
RULES = {
    Channel.WHATSAPP.value: ChannelRules(
        name="WhatsApp", body_chars=4096, window=timedelta(hours=24), template_outside_window=True
    ),
    Channel.MESSENGER.value: ChannelRules(
        name="Messenger", body_chars=2000, window=timedelta(hours=24), human_agent_window=timedelta(days=7)
    ),
    Channel.INSTAGRAM.value: ChannelRules(
        name="Instagram", body_chars=1000, window=timedelta(hours=24), human_agent_window=timedelta(days=7)
    ),
}
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


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """Send one message through the Graph API; ProviderRejected / ProviderUnavailable otherwise.
    The system user's token is long-lived and configured: `tokens` is not used."""
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
            name = filename_of(url, "")
            if name:
                media["filename"] = name
        if caption and kind in _CAPTIONED:
            media["caption"] = caption
            caption = ""
        payloads.append({**base, "type": kind, kind: media})
    if caption and outgoing.choices and not outgoing.media_urls:
        return [{**base, "type": "interactive", "interactive": whatsapp_list(caption, outgoing.choices)}]
    if caption:  # no media, or media that cannot carry it: the text goes first
        payloads.insert(0, {**base, "type": "text", "text": {"body": caption, "preview_url": False}})
    return payloads


# WhatsApp's interactive list: at most 10 rows, a row title of 24 characters, a body of 1024 and
# a button label of 20 (reply buttons allow only 3 choices, too few for five ratings).
LIST_ROWS, ROW_TITLE, LIST_BODY, LIST_BUTTON = 10, 24, 1024, 20


def whatsapp_list(body: str, choices: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    rows = [{"id": choice_id[:200], "title": label[:ROW_TITLE]} for choice_id, label in choices[:LIST_ROWS]]
    return {
        "type": "list",
        "body": {"text": body[:LIST_BODY]},
        "action": {"button": "Choose"[:LIST_BUTTON], "sections": [{"title": "Options", "rows": rows}]},
    }


# Messenger and Instagram quick replies: at most 13, a title of 20 characters.
QUICK_REPLIES, QUICK_REPLY_TITLE = 13, 20


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
    messages = as_list(answer.get("messages"))
    if not messages:
        return None
    return as_text(as_dict(messages[0]).get("id"), MAX_ID_CHARS) or None


# --- Messenger and Instagram ---------------------------------------------------------------------


def page_payloads(outgoing: Outgoing) -> list[dict[str, Any]]:
    """The Send API bodies one outgoing message takes: the text, then each attachment."""
    base: dict[str, Any] = {"recipient": {"id": outgoing.recipient}}
    if outgoing.message_tag:
        base.update(messaging_type="MESSAGE_TAG", tag=outgoing.message_tag)
    else:
        base["messaging_type"] = "RESPONSE"
    messages: list[dict[str, Any]] = [{"text": outgoing.body}] if outgoing.body else []
    if messages and outgoing.choices:
        messages[0]["quick_replies"] = [
            {"content_type": "text", "title": label[:QUICK_REPLY_TITLE], "payload": choice_id[:1000]}
            for choice_id, label in outgoing.choices[:QUICK_REPLIES]
        ]
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
    if not PRINTABLE_ID.fullmatch(outgoing.recipient) or len(outgoing.recipient) > MAX_ID_CHARS:
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
    return as_text(answer.get("message_id"), MAX_ID_CHARS) or None


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
    error = as_dict(as_dict(data).get("error"))
    code = error.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if status == 429 or status >= 500 or code in TRANSIENT_CODES or error.get("is_transient") is True:
        return ProviderUnavailable(PROVIDER, f"HTTP {status}" + (f" (error {code})" if code is not None else ""))
    message = as_text(error.get("message")).strip() or f"HTTP {status}"
    details = as_text(as_dict(error.get("error_data")).get("details")).strip()
    if details and details not in message:
        message = f"{message}: {details}"
    code_text = str(code) if code is not None else f"http_{status}"
    return ProviderRejected(PROVIDER, code_text, message[:MAX_ERROR_CHARS], status)
