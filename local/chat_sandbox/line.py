"""A loopback LINE Messaging API for local runs and tests: reply and push, checked like LINE checks them.

Plug it into the provider sandbox and point the hub at it::

    emulator = sandbox.add_emulator(LineEmulator(channel_access_token="..."))
    LINE_API_BASE_URL = sandbox.url_for("line")          # e.g. http://127.0.0.1:8765/line

Endpoints (under /line)
    ``POST /v2/bot/message/reply``  ``{"replyToken", "messages"}``. A reply token is valid once and
        only for a short time (LINE: about a minute): tokens come from ``issue_reply_token()``, as
        LINE puts them in webhook events; an unknown, used or expired token answers 400
        ``{"message": "Invalid reply token"}``. ``X-Line-Retry-Key`` is refused here (400), as LINE
        refuses it on every endpoint but push, multicast, narrowcast and broadcast.
    ``POST /v2/bot/message/push``  ``{"to", "messages"}`` with an optional ``X-Line-Retry-Key`` (a
        hexadecimal UUID). A key already accepted answers 409 ``{"message": "The retry key is
        already accepted", "sentMessages": [...]}`` with ``x-line-accepted-request-id`` naming the
        accepted request, and delivers nothing; keys are kept 24 hours, as LINE keeps them.
        ``to`` must be a user, group or room id (``U``/``C``/``R`` + 32 hex).

    Both need ``Authorization: Bearer <channel access token>`` (else 401 ``{"message":
    "Authentication failed due to the following reason: ..."}``) and a JSON body; ``messages`` holds
    1 to 5 message objects: text (1 to 5,000 characters counted in UTF-16 code units, as LINE counts
    them), image (``originalContentUrl`` and ``previewImageUrl``, HTTPS, at most 2,000 characters),
    video, audio, location, sticker, and flex/template/imagemap (``altText`` only is checked).
    Problems answer 400 ``{"message": "The request body has N error(s)", "details": [{"message",
    "property"}]}``; the shape is LINE's, the wording of the details is the sandbox's. Every answer
    carries ``x-line-request-id``. Success is 200 ``{"sentMessages": [{"id", "quoteToken"}]}``.

    FORCED FAILURE: pushing to ``U00000000000000000000000000000000`` answers 400
    ``{"message": "Failed to send messages"}`` (LINE's answer for a user id unknown to the channel).
    ``fail_next(status)`` makes the next request answer that status (500, 429, ...) without sending,
    and ``delay_next(seconds)`` makes the next accepted request answer late (after recording it), to
    exercise timeouts that happen after LINE accepted a message.

Sandbox only
    ``POST /sandbox/reply-token`` ``{"userId"?, "ttl"?}`` answers 201 ``{"replyToken", "expiresIn"}``:
    a token minted as by ``issue_reply_token()``, for a webhook sent by hand (see below).

Accepted sends are recorded in the sandbox (``GET /sandbox/messages?provider=line``) as
``{"provider": "line", "id": <first sent id>, "endpoint": "reply"|"push", "to": <user id>,
"request": <JSON body>, "retry_key", "request_id", "sent_messages", "received_at", "status": "sent"}``.

Playing the customer locally: ``python -m local.chat_sandbox.line "Hello"`` POSTs a signed text
webhook to the hub (``--hub``, default http://127.0.0.1:8000), with a reply token minted by the
sandbox when ``--sandbox`` is given; ``--event follow|unfollow`` sends those instead. The channel
secret is ``--secret``, else ``LINE_CHANNEL_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LineEmulator", "webhook_event", "webhook_signature"]

REPLY_TOKEN_TTL_SECONDS = 60.0
RETRY_KEY_TTL_SECONDS = 24 * 3600.0
MAX_MESSAGES = 5
MAX_TEXT_UNITS = 5000
MAX_URL_CHARS = 2000
FAILING_USER = "U" + "0" * 32
STALE_REPLY_MESSAGE = "Invalid reply token"  # LINE's answer to a used or expired reply token

_RECIPIENT = re.compile(r"[UCR][0-9a-f]{32}")
_RETRY_KEY = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video", "template", "flex"})
_MESSAGE_TYPES = frozenset(
    {"text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template", "flex", "coupon"}
)

Answer = tuple[int, Any, list[tuple[str, str]]]


def webhook_signature(body: bytes, channel_secret: str) -> str:
    """x-line-signature for a webhook body: base64(HMAC-SHA256(body, channel secret))."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class _ReplyToken:
    user_id: str | None
    expires_at: float
    used: bool = False


@dataclass
class _AcceptedPush:
    request_id: str
    sent_messages: list[dict[str, str]]
    expires_at: float


class LineEmulator:
    """LINE's reply and push endpoints, served by the provider sandbox under ``/line``."""

    prefix = "line"
    provider = "line"

    def __init__(
        self,
        channel_access_token: str,
        *,
        reply_token_ttl: float = REPLY_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel_access_token = channel_access_token
        self.reply_token_ttl = reply_token_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._sandbox: Any = None
        self._reply_tokens: dict[str, _ReplyToken] = {}
        self._retry_keys: dict[str, _AcceptedPush] = {}
        self._message_ids = itertools.count(461230966842064897)
        self._failures: list[int] = []
        self._delays: list[float] = []

    # -- what tests and local tools use --------------------------------------------------------

    def attach(self, sandbox: Any) -> None:
        self._sandbox = sandbox

    def issue_reply_token(self, user_id: str | None = None, ttl: float | None = None) -> str:
        """A reply token as LINE puts one in a webhook event: valid once, for `ttl` seconds."""
        token = uuid.uuid4().hex
        with self._lock:
            lifetime = self.reply_token_ttl if ttl is None else ttl
            self._reply_tokens[token] = _ReplyToken(user_id, self._clock() + lifetime)
        return token

    def expire_reply_token(self, token: str) -> None:
        with self._lock:
            if token in self._reply_tokens:
                self._reply_tokens[token].expires_at = self._clock() - 1

    def fail_next(self, status: int) -> None:
        """The next request answers `status` (LINE's error shape) and sends nothing."""
        with self._lock:
            self._failures.append(status)

    def delay_next(self, seconds: float) -> None:
        """The next accepted request is recorded at once but answered `seconds` later."""
        with self._lock:
            self._delays.append(seconds)

    def sends(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Accepted sends, oldest first (`endpoint` "reply" or "push" to filter)."""
        records = [r for r in self._sandbox.records() if r.get("provider") == self.provider] if self._sandbox else []
        return [r for r in records if endpoint is None or r.get("endpoint") == endpoint]

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Answer:
        request_id = str(uuid.uuid4())
        status, payload, extra = self._handle(method, path, headers, body, request_id)
        return status, payload, [("x-line-request-id", request_id), *extra]

    def _handle(self, method: str, path: str, headers: Any, body: bytes, request_id: str) -> Answer:
        if path == "/sandbox/reply-token":
            return self._mint(method, body)
        endpoint = {"/v2/bot/message/reply": "reply", "/v2/bot/message/push": "push"}.get(path)
        if endpoint is None:
            return 404, {"message": "Not found"}, []
        if method != "POST":
            return 405, {"message": "Method not allowed"}, [("Allow", "POST")]
        if not self._authorized(headers):
            reason = "invalid token. Confirm that the access token in the authorization header is valid."
            return 401, {"message": f"Authentication failed due to the following reason: {reason}"}, []
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return failure, {"message": "The sandbox was told to fail this request"}, []
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return 400, {"message": f"The content type, {content_type or '(none)'}, is not supported"}, []
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return 400, {"message": "The request body could not be parsed as JSON (line: -, column: -)"}, []
        if not isinstance(request, dict):
            return 400, {"message": "The request body could not be parsed as JSON (line: -, column: -)"}, []
        retry_key = headers.get("X-Line-Retry-Key")
        if endpoint == "reply":
            return self._reply(request, retry_key, request_id)
        return self._push(request, retry_key, request_id)

    def _mint(self, method: str, body: bytes) -> Answer:
        if method != "POST":
            return 405, {"message": "Method not allowed"}, [("Allow", "POST")]
        try:
            wanted = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            wanted = None
        if not isinstance(wanted, dict):
            return 400, {"message": 'send a JSON object: {"userId"?, "ttl"?}'}, []
        ttl = wanted.get("ttl", self.reply_token_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl <= 3600:
            return 400, {"message": "ttl must be a number of seconds between 0 and 3600"}, []
        user_id = wanted.get("userId") if isinstance(wanted.get("userId"), str) else None
        return 201, {"replyToken": self.issue_reply_token(user_id, float(ttl)), "expiresIn": ttl}, []

    def _authorized(self, headers: Any) -> bool:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(token.strip().encode(), self.channel_access_token.encode())

    def _reply(self, request: dict[str, Any], retry_key: str | None, request_id: str) -> Answer:
        if retry_key is not None:
            return 400, {"message": "X-Line-Retry-Key is not supported by this endpoint"}, []
        errors = _message_errors(request.get("messages"))
        token = request.get("replyToken")
        if not isinstance(token, str) or not token:
            errors.insert(0, {"message": "May not be empty", "property": "replyToken"})
        if errors:
            return _invalid(errors)
        with self._lock:
            issued = self._reply_tokens.get(token)
            if issued is None or issued.used or issued.expires_at <= self._clock():
                return 400, {"message": STALE_REPLY_MESSAGE}, []
            issued.used = True
            sent = self._sent_messages(request["messages"])
        return self._accept("reply", issued.user_id, request, None, request_id, sent)

    def _push(self, request: dict[str, Any], retry_key: str | None, request_id: str) -> Answer:
        if retry_key is not None and not _RETRY_KEY.fullmatch(retry_key):
            return 400, {"message": "The value of X-Line-Retry-Key must be a UUID in hexadecimal format"}, []
        to = request.get("to")
        errors = []
        if not isinstance(to, str) or not to:
            errors.append({"message": "May not be empty", "property": "to"})
        elif not _RECIPIENT.fullmatch(to):
            return 400, {"message": "The property, to, in the request body is invalid (line: -, column: -)"}, []
        errors.extend(_message_errors(request.get("messages")))
        if errors:
            return _invalid(errors)
        if to == FAILING_USER:
            return 400, {"message": "Failed to send messages"}, []
        with self._lock:
            now = self._clock()
            accepted = self._retry_keys.get(retry_key.lower()) if retry_key else None
            if accepted is not None and accepted.expires_at > now:
                payload = {"message": "The retry key is already accepted", "sentMessages": accepted.sent_messages}
                return 409, payload, [("x-line-accepted-request-id", accepted.request_id)]
            sent = self._sent_messages(request["messages"])
            if retry_key:
                self._retry_keys[retry_key.lower()] = _AcceptedPush(request_id, sent, now + RETRY_KEY_TTL_SECONDS)
        return self._accept("push", to, request, retry_key, request_id, sent)

    def _sent_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        sent = []
        for message in messages:
            entry = {"id": str(next(self._message_ids))}
            if message.get("type") in _QUOTABLE:
                entry["quoteToken"] = secrets.token_urlsafe(24)
            sent.append(entry)
        return sent

    def _accept(
        self,
        endpoint: str,
        to: str | None,
        request: dict[str, Any],
        retry_key: str | None,
        request_id: str,
        sent: list[dict[str, str]],
    ) -> Answer:
        if self._sandbox is not None:
            self._sandbox.record(
                {
                    "provider": self.provider,
                    "id": sent[0]["id"],
                    "endpoint": endpoint,
                    "to": to,
                    "request": request,
                    "retry_key": retry_key,
                    "request_id": request_id,
                    "sent_messages": sent,
                    "received_at": datetime.now(UTC).isoformat(),
                    "status": "sent",
                }
            )
        with self._lock:
            delay = self._delays.pop(0) if self._delays else 0.0
        if delay:
            time.sleep(delay)  # accepted already: the caller may time out, as with a slow LINE
        return 200, {"sentMessages": sent}, []


def _invalid(errors: list[dict[str, str]]) -> Answer:
    return 400, {"message": f"The request body has {len(errors)} error(s)", "details": errors}, []


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _https_url(value: Any) -> bool:
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


def _message_errors(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        return [{"message": "Size must be between 1 and 5", "property": "messages"}]
    if len(messages) > MAX_MESSAGES:
        return [{"message": "Size must be between 1 and 5", "property": "messages"}]
    errors: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        errors.extend(_one_message_errors(f"messages[{index}]", message))
    return errors


def _quick_reply_errors(where: str, quick: Any) -> Iterable[dict[str, str]]:
    """Quick reply buttons: 1 to 13 items, each an action with a label of 1 to 20 characters (a
    message action also needs its text, 1 to 300)."""
    items = quick.get("items") if isinstance(quick, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 13:
        yield {"message": "Size must be between 1 and 13", "property": f"{where}.items"}
        return
    for index, item in enumerate(items):
        action = item.get("action") if isinstance(item, dict) and item.get("type") == "action" else None
        if not isinstance(action, dict):
            yield {"message": "Must be an action item", "property": f"{where}.items[{index}]"}
            continue
        label = action.get("label")
        if not isinstance(label, str) or not 1 <= len(label) <= 20:
            yield {"message": "Length must be between 1 and 20", "property": f"{where}.items[{index}].action.label"}
        if action.get("type") == "message" and not (
            isinstance(action.get("text"), str) and 1 <= len(action["text"]) <= 300
        ):
            yield {"message": "Length must be between 1 and 300", "property": f"{where}.items[{index}].action.text"}


def _one_message_errors(where: str, message: Any) -> Iterable[dict[str, str]]:
    if not isinstance(message, dict):
        yield {"message": "Must be an object", "property": where}
        return
    kind = message.get("type")
    if kind not in _MESSAGE_TYPES:
        yield {"message": f"Must be one of the following values: {sorted(_MESSAGE_TYPES)}", "property": f"{where}.type"}
        return
    if "quickReply" in message:
        yield from _quick_reply_errors(f"{where}.quickReply", message["quickReply"])
    if kind in ("text", "textV2"):
        text = message.get("text")
        if not isinstance(text, str) or not text:
            yield {"message": "May not be empty", "property": f"{where}.text"}
        elif _utf16_units(text) > MAX_TEXT_UNITS:
            yield {"message": f"Length must be between 1 and {MAX_TEXT_UNITS}", "property": f"{where}.text"}
    elif kind in ("image", "video"):
        for name in ("originalContentUrl", "previewImageUrl"):
            if not _https_url(message.get(name)):
                yield {"message": "Must be an HTTPS URL of at most 2000 characters", "property": f"{where}.{name}"}
    elif kind == "audio":
        if not _https_url(message.get("originalContentUrl")):
            yield {"message": "Must be an HTTPS URL", "property": f"{where}.originalContentUrl"}
        duration = message.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            yield {"message": "Must be a positive number", "property": f"{where}.duration"}
    elif kind == "location":
        for name in ("title", "address"):
            if not isinstance(message.get(name), str) or not message[name]:
                yield {"message": "May not be empty", "property": f"{where}.{name}"}
        for name in ("latitude", "longitude"):
            value = message.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                yield {"message": "Must be a number", "property": f"{where}.{name}"}
    elif kind == "sticker":
        for name in ("packageId", "stickerId"):
            if not isinstance(message.get(name), str) or not message[name]:
                yield {"message": "May not be empty", "property": f"{where}.{name}"}
    elif kind in ("flex", "template", "imagemap"):
        alt = message.get("altText")
        if not isinstance(alt, str) or not alt:
            yield {"message": "May not be empty", "property": f"{where}.altText"}


# --------------------------------------------------------------------------------------------
# Playing the customer: a signed webhook sent by hand
# --------------------------------------------------------------------------------------------

LOCAL_CUSTOMER = "U0123456789abcdef0123456789abcdef"
LOCAL_BOT = "Ufedcba9876543210fedcba9876543210"


def webhook_event(kind: str, user_id: str, text: str = "", reply_token: str | None = None) -> dict[str, Any]:
    """A webhook event as LINE sends it: a text message, a follow or an unfollow."""
    event: dict[str, Any] = {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": _ulid(),
        "deliveryContext": {"isRedelivery": False},
    }
    if kind == "message":
        event["message"] = {"id": str(time.time_ns() // 1000), "type": "text", "quoteToken": _ulid(), "text": text}
    if kind == "follow":
        event["follow"] = {"isUnblocked": False}
    if reply_token and kind != "unfollow":
        event["replyToken"] = reply_token
    return event


def _ulid() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import urllib.error
    import urllib.request

    parser = argparse.ArgumentParser(prog="python -m local.chat_sandbox.line", description=__doc__.split("\n")[0])
    parser.add_argument("text", nargs="?", default="Hello from LINE")
    parser.add_argument("--hub", default="http://127.0.0.1:8000", help="the hub's base URL")
    parser.add_argument("--sandbox", help="the provider sandbox's base URL, to mint a reply token")
    parser.add_argument("--secret", default=os.environ.get("LINE_CHANNEL_SECRET", ""), help="the channel secret")
    parser.add_argument("--user", default=LOCAL_CUSTOMER, help="the customer's LINE user id")
    parser.add_argument("--event", choices=("message", "follow", "unfollow"), default="message")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give --secret or set LINE_CHANNEL_SECRET (the hub's value)")
    token = None
    if args.sandbox:
        mint = urllib.request.Request(
            f"{args.sandbox.rstrip('/')}/line/sandbox/reply-token",
            data=json.dumps({"userId": args.user}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(mint, timeout=10) as answer:
                token = json.loads(answer.read())["replyToken"]
        except urllib.error.URLError as error:  # HTTPError included
            print(f"no reply token from the sandbox at {args.sandbox}: {error}")
            return 1
    payload = {"destination": LOCAL_BOT, "events": [webhook_event(args.event, args.user, args.text, token)]}
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        f"{args.hub.rstrip('/')}/webhooks/line",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Line-Signature": webhook_signature(body, args.secret),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            print(answer.status, answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode("utf-8", "replace"))
        return 1
    except urllib.error.URLError as error:
        print(f"the hub at {args.hub} could not be reached: {error.reason}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
