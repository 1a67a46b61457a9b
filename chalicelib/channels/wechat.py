"""WeChat Official Account (公众号): the message push in plaintext mode, and customer service messages.

Inbound. WeChat POSTs one XML document per message or event to the server URL configured in the
account's console, with `?signature=&timestamp=&nonce=` (and `openid=`) in the query string.
`signature` is the SHA-1 hex of the lexicographically sorted concatenation of the console's Token,
`timestamp` and `nonce`; the same check answers the GET that proves the URL is ours (return
`echostr`). The signature covers no byte of the body, so a captured query string could be replayed
with another body: HTTPS keeps it from being captured, and a timestamp more than
`MAX_TIMESTAMP_SKEW_SECONDS` from now is refused, which bounds how long one stays usable.

Plaintext mode only: in safe mode (安全模式) the body holds just `<Encrypt>` and is refused with a
400 that says so, loudly, rather than acknowledged and lost. Compatibility mode (兼容模式) sends the
plaintext fields beside `<Encrypt>`; they are read as in plaintext mode.

The XML is parsed with expat directly, refusing any DOCTYPE, entity declaration or external entity
(no billion laughs, no XXE; defusedxml is not a dependency), with a size and depth bound.

WeChat waits 5 seconds, then retries up to three times; messages are deduplicated on `MsgId`, as the
docs advise. Follow/unfollow events carry no MsgId (the docs dedupe them on FromUserName +
CreateTime); they only set consent, which is idempotent. WeChat expects the body `success`.

Outbound. Customer service messages (客服消息), allowed for 48 hours after the customer's last
message: `POST /cgi-bin/message/custom/send?access_token=`. WeChat answers HTTP 200 with `errcode`
0 or an error code; success carries no message id. The access token comes from the stable token
API (`POST /cgi-bin/stable_token`), which, unlike `/cgi-bin/token`, does not invalidate the token
other holders use; it is shared through the token cache the caller hands to `send` (the DynamoDB
one, store/access_tokens.py) and refreshed five minutes before it expires, or once when a send is
refused for an invalid or expired token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import Identity, InvalidIdentity, user_id_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped, WebhookItem

PROVIDER = "wechat"
ACKNOWLEDGEMENT = "success"
ACKNOWLEDGEMENT_TYPE = "text/plain; charset=utf-8"
# Customer service messages: within 48 hours of the customer's last message, 2,048 bytes of UTF-8
# text (error 45002), media as links (uploads would need media ids).
RULES = {
    Channel.WECHAT.value: ChannelRules(
        name="WeChat", body_chars=2000, body_bytes=2048, media=10, media_as_links=True, window=timedelta(hours=48)
    )
}

# WeChat retries three times within about 15 seconds (5 s timeout each); five minutes covers that
# and any clock drift with a wide margin, and keeps a captured query string useful only briefly.
MAX_TIMESTAMP_SKEW_SECONDS = 300
# A text message is at most a few kB; compatibility mode roughly triples a body. 64 KiB is ample.
MAX_BODY_BYTES = 64 * 1024
MAX_XML_DEPTH = 8  # the deepest documented event (pic_sysphoto: SendPicsInfo/PicList/item/PicMd5Sum) has 5
MAX_XML_ELEMENTS = 500
MAX_ECHOSTR_CHARS = 256
MAX_QUERY_VALUE_CHARS = 128

_DIGITS = re.compile(r"[0-9]+")
_MSG_ID = re.compile(r"[0-9]{1,20}")  # a 64-bit integer
_CREATE_TIME = re.compile(r"[0-9]{1,10}")
_ECHOSTR = re.compile(r"[\x21-\x7e]+")


# --------------------------------------------------------------------------------------------
# Verification


def signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's signature: SHA-1 hex of token, timestamp and nonce, sorted and concatenated."""
    text = "".join(sorted((token, timestamp, nonce)))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 - WeChat's protocol, not our choice


def _check_signature(request: WebhookRequest, now: float | None) -> None:
    from chalicelib.config import secret

    token = secret("wechat_token")
    if not token:
        raise WebhookRejected("WECHAT_TOKEN is not configured")
    given = request.query_value("signature") or ""
    timestamp = request.query_value("timestamp") or ""
    nonce = request.query_value("nonce") or ""
    if not given or not timestamp or not nonce:
        raise WebhookRejected("the signature, timestamp and nonce query parameters are required")
    if max(len(given), len(timestamp), len(nonce)) > MAX_QUERY_VALUE_CHARS:
        raise WebhookRejected("a signature query parameter is too long")
    expected = signature(token, timestamp, nonce)
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8")):
        raise WebhookRejected("signature does not match the token, timestamp and nonce")
    if not _DIGITS.fullmatch(timestamp):
        raise WebhookRejected("timestamp is not a number of seconds")
    skew = abs((time.time() if now is None else now) - int(timestamp))
    if skew > MAX_TIMESTAMP_SKEW_SECONDS:
        raise WebhookRejected(f"timestamp is {int(skew)} s away from now (at most {MAX_TIMESTAMP_SKEW_SECONDS} s)")


def verify(request: WebhookRequest, now: float | None = None) -> None:
    """Check the signature in the query string of a message push."""
    _check_signature(request, now)


def handshake(request: WebhookRequest, now: float | None = None) -> str:
    """The server URL check in the console: a signed GET whose `echostr` is echoed back."""
    _check_signature(request, now)
    echostr = request.query_value("echostr") or ""
    if not echostr or len(echostr) > MAX_ECHOSTR_CHARS or not _ECHOSTR.fullmatch(echostr):
        raise MalformedPayload("'echostr' is missing or not the random string WeChat sends")
    return echostr


def acknowledgement(outcome: BatchOutcome) -> str:
    # Anything but "success" (or an empty body) within 5 s makes WeChat tell the user that the
    # account cannot provide service right now.
    return ACKNOWLEDGEMENT


# --------------------------------------------------------------------------------------------
# Parsing


class _Refused(Exception):
    """Raised from inside expat's callbacks to stop at the first forbidden construct."""


def read_xml(body: bytes) -> dict[str, str]:
    """The text of each child of the root `<xml>` element (first occurrence wins).

    Refuses what a hostile document could use against the parser: a DOCTYPE (internal subsets
    declare entities: billion laughs), entity and notation declarations, external entities (XXE);
    and bounds the size, depth and element count.
    """
    from xml.parsers import expat

    if len(body) > MAX_BODY_BYTES:
        raise MalformedPayload(f"the body is larger than {MAX_BODY_BYTES} bytes; a WeChat push is far smaller")
    if not body.strip():
        raise MalformedPayload("the body is empty; WeChat sends an XML document")
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise MalformedPayload("XML with a DOCTYPE or entity declarations is refused")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("the body is not UTF-8 text") from None

    fields: dict[str, str] = {}
    depth = 0
    elements = 0
    current: list[str] = []

    def refuse(*_: Any) -> Any:
        raise _Refused("DOCTYPE, entity and notation declarations are refused")

    def start(name: str, _attributes: Any) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > MAX_XML_DEPTH or elements > MAX_XML_ELEMENTS:
            raise _Refused("the XML is nested too deeply or has too many elements")
        if depth == 1 and name != "xml":
            raise _Refused(f"the root element is <{name[:40]}>, not <xml>")
        if depth == 2:
            current.clear()

    def text(data: str) -> None:
        if depth == 2:
            current.append(data)

    def end(name: str) -> None:
        nonlocal depth
        if depth == 2:
            fields.setdefault(name, "".join(current))
        depth -= 1

    parser = expat.ParserCreate(encoding="UTF-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.NotationDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except _Refused as exc:
        raise MalformedPayload(f"the XML is refused: {exc}") from None
    except expat.ExpatError as exc:
        raise MalformedPayload(f"the body is not well-formed XML ({expat.ErrorString(exc.code)})") from None
    return fields


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """The one message or event of a push, as a list of webhook items."""
    fields = read_xml(request.body)
    encrypted = (request.query_value("encrypt_type") or "raw").lower() == "aes"
    if "MsgType" not in fields and ("Encrypt" in fields or encrypted):
        raise MalformedPayload(
            "the body is encrypted (safe mode), which the hub does not support: set the account's message "
            "encryption mode to plaintext (明文模式) in the WeChat console"
        )
    return [_item(fields)]


def _item(fields: dict[str, str]) -> WebhookItem:
    msg_type = _required(fields, "MsgType").strip().lower()
    if msg_type == "event":
        event = _required(fields, "Event").strip()
        kind = event.lower()
        if kind in ("subscribe", "unsubscribe"):
            return ConsentChange(
                channel=Channel.WECHAT,
                sender=_sender(fields),
                opted_out=kind == "unsubscribe",
                occurred_at=_create_time(fields),
            )
        return Skipped(f"event:{event[:40]}", _SKIPPED_EVENTS.get(kind, "an event the hub does not use"))
    build = _MESSAGES.get(msg_type)
    if build is None:
        return Skipped(f"message:{msg_type[:40]}", "a message type the hub does not handle")
    sender = _sender(fields)
    recipient = _required(fields, "ToUserName").strip()
    if len(recipient) > 64:
        raise MalformedPayload("<ToUserName> is not an official account id")
    body, media = build(fields)
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=_msg_id(fields),
        channel=Channel.WECHAT,
        sender=sender,
        sender_address=sender.value,
        recipient_address=recipient,
        body=body,
        media=media,
        provider_account=recipient,
        # received_at stays the arrival time, as for every channel: the thread is ordered by arrival,
        # and the verified query timestamp already keeps arrival within minutes of CreateTime.
    )


_SKIPPED_EVENTS = {
    "click": "a menu click (its key is not a message)",
    "view": "a menu link opened",
    "scan": "a QR code scanned by a follower",
    "location": "a location report (not a message the customer sent)",
    "templatesendjobfinish": "a template message report (the hub sends customer service messages, not templates)",
    "masssendjobfinish": "a broadcast report",
}


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value.strip():
        raise MalformedPayload(f"<{name}> is required")
    return value


def _sender(fields: dict[str, str]) -> Identity:
    try:
        return user_id_identity(Channel.WECHAT.value, _required(fields, "FromUserName"))
    except InvalidIdentity as exc:
        raise MalformedPayload(f"<FromUserName> is not an OpenID ({exc})") from None


def _msg_id(fields: dict[str, str]) -> str:
    # The docs spell it MsgID in one table (voice); pushes use MsgId. Accept both.
    raw = (fields.get("MsgId") or fields.get("MsgID") or "").strip()
    if not raw:
        raise MalformedPayload("<MsgId> is required")
    if not _MSG_ID.fullmatch(raw):
        raise MalformedPayload("<MsgId> is not a 64-bit message id")
    return raw


def _create_time(fields: dict[str, str]) -> datetime:
    raw = _required(fields, "CreateTime").strip()
    if not _CREATE_TIME.fullmatch(raw):
        raise MalformedPayload("<CreateTime> is not a time in seconds")
    return datetime.fromtimestamp(int(raw), UTC)


def _text(fields: dict[str, str]) -> tuple[str, list[Media]]:
    return fields.get("Content", ""), []


def _image(fields: dict[str, str]) -> tuple[str, list[Media]]:
    url = fields.get("PicUrl", "").strip()
    media_id = fields.get("MediaId", "").strip() or None
    if not url and not media_id:
        raise MalformedPayload("an image message needs <PicUrl> or <MediaId>")
    return "", [Media(url=url if _is_http_url(url) else None, content_type="image", content_id=media_id)]


def _voice(fields: dict[str, str]) -> tuple[str, list[Media]]:
    # Voice, like video, is fetched by its MediaId (temporary media API, kept three days);
    # content_id keeps that id. Recognition is WeChat's transcript, when the account enabled it.
    media_id = _required(fields, "MediaId").strip()
    audio_format = re.sub(r"[^a-z0-9]", "", fields.get("Format", "").lower())[:16]
    content_type = f"audio/{audio_format}" if audio_format else "audio"
    return fields.get("Recognition", "").strip(), [Media(content_type=content_type, content_id=media_id)]


def _video(fields: dict[str, str]) -> tuple[str, list[Media]]:
    return "", [Media(content_type="video", content_id=_required(fields, "MediaId").strip())]


def _location(fields: dict[str, str]) -> tuple[str, list[Media]]:
    latitude = _coordinate(fields, "Location_X", 90)
    longitude = _coordinate(fields, "Location_Y", 180)
    label = fields.get("Label", "").strip() or "Location"
    return f"{label}: {latitude},{longitude}", []


def _coordinate(fields: dict[str, str], name: str, bound: float) -> str:
    raw = _required(fields, name).strip()
    try:
        value = float(raw)
    except ValueError:
        raise MalformedPayload(f"<{name}> is not a coordinate") from None
    if not -bound <= value <= bound:
        raise MalformedPayload(f"<{name}> is not a coordinate")
    return raw


def _link(fields: dict[str, str]) -> tuple[str, list[Media]]:
    parts = [fields.get(name, "").strip() for name in ("Title", "Description", "Url")]
    if not any(parts):
        raise MalformedPayload("a link message needs <Title>, <Description> or <Url>")
    return "\n".join(part for part in parts if part), []


def _is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://")) and len(value) <= 2048 and not any(c.isspace() for c in value)


_MESSAGES: dict[str, Callable[[dict[str, str]], tuple[str, list[Media]]]] = {
    "text": _text,
    "image": _image,
    "voice": _voice,
    "video": _video,
    "shortvideo": _video,
    "location": _location,
    "link": _link,
}


# --------------------------------------------------------------------------------------------
# Sending


DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
# Refresh a shared token this long before it expires: the stable token API renews it when asked
# within its last five minutes (and keeps the old one valid five more), so this always gets a new one.
TOKEN_REFRESH_MARGIN_SECONDS = 300
MAX_TOKEN_CHARS = 2048  # the docs ask for 512 characters of storage
MAX_RESPONSE_BYTES = 64 * 1024
TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
# System busy, daily API quota reached, calls too frequent: worth retrying later, nothing was sent.
UNAVAILABLE_ERRORS = frozenset({-1, 45009, 45011})


@dataclass(frozen=True)
class _Config:
    app_id: str
    app_secret: str
    base_url: str


def _config() -> _Config:
    from chalicelib.config import secret, settings

    config = settings()
    return _Config(
        app_id=config.wechat_app_id.strip(),
        app_secret=secret("wechat_app_secret"),
        base_url=(config.wechat_api_base_url or DEFAULT_API_BASE_URL).rstrip("/"),
    )


def missing_settings(channel: str) -> list[str]:
    config = _config()
    needed = {"WECHAT_APP_ID": config.app_id, "WECHAT_APP_SECRET": config.app_secret}
    return [name for name, value in needed.items() if not value]


def message_text(body: str, media_urls: tuple[str, ...] | list[str]) -> str:
    """The text sent: the body, then any media as links (WeChat sends media only by uploaded id)."""
    if not media_urls:
        return body
    links = "\n".join(media_urls)
    return f"{body.rstrip()}\n\n{links}" if body.strip() else links


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """A customer service text message to the follower's OpenID.

    `tokens` is where the account's access token is shared (store/access_tokens.py); without it
    nothing is sent. A send refused for an invalid or expired token was not delivered, so it is
    retried once with a refreshed token. Raises ProviderRejected (WeChat's errcode as the code) or
    ProviderUnavailable.
    """
    config = _config()
    if not config.app_id or not config.app_secret:
        raise ProviderUnavailable(PROVIDER, "WECHAT_APP_ID and WECHAT_APP_SECRET are required to send")
    if tokens is None:
        raise ProviderUnavailable(PROVIDER, "no access-token cache was given")
    payload = {
        "touser": outgoing.recipient,
        "msgtype": "text",
        "text": {"content": message_text(outgoing.body, outgoing.media_urls)},
    }
    token = access_token(config, tokens, outgoing.timeout)
    answer = _send_with(config, token, payload, outgoing.timeout)
    if _errcode(answer) in TOKEN_ERRORS:
        token = access_token(config, tokens, outgoing.timeout, refused=token)
        answer = _send_with(config, token, payload, outgoing.timeout)
    code = _errcode(answer)
    if code == 0:
        return SentMessage(
            provider=PROVIDER,
            provider_message_id=None,  # WeChat gives customer service messages no id
            status=DeliveryStatus.SENT,
            sender_address=None,
            recipient_address=outgoing.recipient,
        )
    _raise_for(code, answer, token)


def _send_with(config: _Config, token: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    from urllib.parse import quote

    url = f"{config.base_url}/cgi-bin/message/custom/send?access_token={quote(token, safe='')}"
    return _call(url, payload, timeout, secrets=(token,))


def access_token(config: _Config, tokens: TokenCache, timeout: float, refused: str | None = None) -> str:
    """The account's shared access token, fetched (and put in `tokens`) when missing, near its
    expiry, or just `refused` by WeChat.

    `tokens` is a cache: the stable token API hands every caller the current token without
    invalidating anyone's, so if the cache cannot be read or written the send still works.
    """
    from chalicelib.observability import logger

    now = time.time()
    if refused is None:
        try:
            cached = tokens.get(PROVIDER, config.app_id)
        except Exception as exc:  # storage trouble must not stop a send the stable token allows
            logger.warning("access token cache unreadable", extra={"provider": PROVIDER, "error": type(exc).__name__})
            cached = None
        if cached is not None and cached.seconds_left(now) > TOKEN_REFRESH_MARGIN_SECONDS:
            return cached.token
    token, expires_in = _fetch_token(config, timeout, force_refresh=False)
    if refused is not None and hmac.compare_digest(token.encode(), refused.encode()):
        # WeChat refused the very token its normal mode still hands out (the platform's state is odd,
        # e.g. right after the AppSecret was reset): force a new one. Limited to 20 a day, so only here.
        token, expires_in = _fetch_token(config, timeout, force_refresh=True)
    try:
        tokens.put(PROVIDER, config.app_id, token, int(now) + expires_in, now, replacing=refused)
    except Exception as exc:
        logger.warning("access token not cached", extra={"provider": PROVIDER, "error": type(exc).__name__})
    return token


def _fetch_token(config: _Config, timeout: float, force_refresh: bool) -> tuple[str, int]:
    payload = {
        "grant_type": "client_credential",
        "appid": config.app_id,
        "secret": config.app_secret,
        "force_refresh": force_refresh,
    }
    url = f"{config.base_url}/cgi-bin/stable_token"
    answer = _call(url, payload, timeout, secrets=(config.app_secret,))
    code = _errcode(answer)
    if code not in (0, None):
        _raise_for(code, answer, config.app_secret, context="access token request refused: ")
    token = answer.get("access_token")
    expires_in = answer.get("expires_in")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise ProviderUnavailable(PROVIDER, "the access token answer carries no usable access_token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= 86_400:
        raise ProviderUnavailable(PROVIDER, "the access token answer carries no usable expires_in")
    return token, expires_in


def _errcode(answer: dict[str, Any]) -> int | None:
    value = answer.get("errcode")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # an unreadable code: treat as WeChat's "system busy"


def _raise_for(code: int | None, answer: dict[str, Any], secret_text: str, context: str = "") -> NoReturn:
    message = _redact(str(answer.get("errmsg") or "no errmsg"), secret_text)[:300]
    if code is None:
        raise ProviderUnavailable(PROVIDER, "the answer carries no errcode")
    if code in UNAVAILABLE_ERRORS:
        raise ProviderUnavailable(PROVIDER, f"errcode {code}: {message}")
    raise ProviderRejected(PROVIDER, str(code), context + message, 200)


def _redact(text: str, *secrets: str) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "[redacted]")
    return text


def _call(url: str, payload: dict[str, Any], timeout: float, secrets: tuple[str, ...]) -> dict[str, Any]:
    """One JSON POST. The URL may hold the access token: it never reaches a message or a log."""
    from chalicelib.channels.http_json import post_json

    answer = post_json(
        PROVIDER,
        url,
        payload,
        timeout=timeout,
        api_base_url=DEFAULT_API_BASE_URL,
        base_url_setting="WECHAT_API_BASE_URL",
        max_bytes=MAX_RESPONSE_BYTES,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    if not answer.ok:
        if answer.status == 429 or answer.status >= 500:
            raise ProviderUnavailable(PROVIDER, f"HTTP {answer.status}")
        refusal = _json_object(answer.body) or {}
        code = str(refusal.get("errcode", f"http_{answer.status}"))
        message = _redact(str(refusal.get("errmsg") or f"HTTP {answer.status}"), *secrets)[:300]
        raise ProviderRejected(PROVIDER, code, message, answer.status)
    data = _json_object(answer.body)
    if data is None:
        raise ProviderUnavailable(PROVIDER, "the answer is not a JSON object")
    return data


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
