"""Meta Graph API send endpoints, emulated: WhatsApp Cloud API, Messenger and Instagram.

Served by the provider sandbox under ``/meta/`` (``sandbox.add_emulator(MetaEmulator(...))``; point
``META_GRAPH_BASE_URL`` at ``sandbox.url_for("meta")``).

``POST /{version}/{node}/messages``
    ``Authorization: Bearer <token>`` (or ``?access_token=``) must be the configured access token,
    else 401 with Graph error 190. ``version`` must look like ``v21.0`` and, when the emulator is
    given one, be that version (else 400, error 2500 "Unknown path components"). ``node`` picks the
    product: the WhatsApp phone number id, the Facebook Page id (or ``me``) for Messenger, or the
    Instagram account id; any other node is 400 with error 100 (subcode 33), as Graph answers for an
    object it cannot load.

    WhatsApp checks, each a 400 Graph error 100 with ``error_data.details`` saying what is wrong:
    ``messaging_product`` is ``whatsapp``; ``recipient_type`` (if given) is ``individual``; ``to`` is
    a phone number's digits (an optional ``+``); ``type`` is one the API knows and its object is
    present; text ``body`` is 1..4096 characters; media has exactly one of ``link`` (http/https)
    or ``id``, a ``caption`` only on image/video/document and at most 1024 characters; a template
    has a ``name`` and ``language.code``. Success is 200
    ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}``.

    Messenger / Instagram checks (400, error 100): ``recipient.id`` present; ``messaging_type`` is
    RESPONSE, UPDATE or MESSAGE_TAG, and MESSAGE_TAG comes with a ``tag`` Meta still accepts
    (HUMAN_AGENT, ACCOUNT_UPDATE, CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE); ``message`` holds
    exactly one of ``text`` (1..2000 characters on Messenger, 1000 on Instagram) or ``attachment``
    (type image/video/audio/file, Instagram without file, with an http(s) ``payload.url`` or an
    ``attachment_id``). Success is 200 ``{"recipient_id", "message_id": "m_..."}``.

    FORCED FAILURES: a Messenger/Instagram recipient id ending in ``0000`` is refused at once with
    error 551 ("This person isn't available right now"), as Meta does for a user who cannot be
    reached; a WhatsApp ``to`` ending in ``0000`` is accepted and then reported ``failed`` with error
    131026 (message undeliverable) when receipts are on.

Receipts (``report_delivery=True`` with a ``webhook_url`` and the ``app_secret``)
    Each accepted message is reported back to the hub's ``/webhooks/meta`` from a background
    thread, signed with ``X-Hub-Signature-256`` over the exact bytes sent: WhatsApp posts a
    ``statuses`` change ``sent`` then ``delivered`` (or ``failed``); Messenger posts a ``delivery``
    event naming the mid. Instagram has no delivery receipts, so none are sent. Delivery problems
    are recorded on the message (``callbacks``), never raised.

Every accepted request is recorded in the sandbox (``GET /sandbox/messages?provider=meta``) as
``{"provider": "meta", "id", "channel", "node", "received_at", "request", "status", "callbacks"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.sandbox import post_callback

WHATSAPP_MAX_TEXT = 4096
MESSENGER_MAX_TEXT = 2000
INSTAGRAM_MAX_TEXT = 1000
MAX_CAPTION = 1024
FAILING_SUFFIX = "0000"
UNDELIVERABLE = {
    "code": 131026,
    "title": "Message undeliverable",
    "message": "Message undeliverable",
    "error_data": {"details": "Message Undeliverable."},
}
CALLBACK_TIMEOUT_SECONDS = 5.0

_VERSION = re.compile(r"v\d{1,2}\.\d")
_TO = re.compile(r"\+?\d{7,15}")
_WHATSAPP_TYPES = frozenset(
    {
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "template",
        "location",
        "contacts",
        "interactive",
        "reaction",
    }
)
_WHATSAPP_MEDIA = ("image", "audio", "video", "document", "sticker")
_CAPTIONED = ("image", "video", "document")
_MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
_TAGS = ("HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE")
_ATTACHMENT_TYPES = {"messenger": ("image", "video", "audio", "file"), "instagram": ("image", "video", "audio")}

Reply = tuple[int, Any, list[tuple[str, str]]]


def graph_error(
    status: int, code: int, message: str, *, subcode: int | None = None, details: str | None = None
) -> Reply:
    """A Graph API error answer: `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`."""
    error: dict[str, Any] = {
        "message": message if code == 190 else f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_urlsafe(16),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    headers = [("WWW-Authenticate", 'OAuth "Facebook Platform" "invalid_token"')] if code == 190 else []
    return status, {"error": error}, headers


def _header(headers: Any, name: str) -> str:
    if headers is None:
        return ""
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return str(value or "")


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _now_ms() -> int:
    return int(time.time() * 1000)


def whatsapp_message_id() -> str:
    """A wamid: `wamid.` and base64, the shape Meta's ids have."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_hex(9).upper().encode()).decode()


def messenger_message_id() -> str:
    return "m_" + secrets.token_urlsafe(64)[:86]


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class MetaEmulator:
    """The Graph API's message sends for one app: a WhatsApp number, a Page and an Instagram account."""

    prefix = "meta"
    provider = "meta"

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str = "",
        page_id: str = "",
        instagram_account_id: str = "",
        version: str | None = None,
        app_secret: str = "",
        webhook_url: str | Callable[[], str] | None = None,
        report_delivery: bool = False,
        display_phone_number: str = "15550783881",
        business_account_id: str = "102290129340398",
        receipt_delay: float = 0.05,
    ) -> None:
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.page_id = page_id
        self.instagram_account_id = instagram_account_id
        self.version = version
        self.app_secret = app_secret
        self.webhook_url = webhook_url
        self.report_delivery = report_delivery
        self.display_phone_number = display_phone_number
        self.business_account_id = business_account_id
        self.receipt_delay = receipt_delay
        self._sandbox: Any = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._records_by_id: dict[str, dict[str, Any]] = {}

    def attach(self, sandbox: Any) -> None:
        self._sandbox = sandbox

    # -- requests ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if not self._authorized(headers, query):
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if len(parts) != 3 or not _VERSION.fullmatch(parts[0]) or (self.version and parts[0] != self.version):
            return graph_error(400, 2500, f"Unknown path components: {path}")
        _, node, edge = parts
        if edge != "messages":
            return graph_error(400, 2500, f"Unknown path components: /{edge}")
        channel = self._channel_of(node)
        if channel is None:
            return graph_error(
                400,
                100,
                f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to "
                "missing permissions, or does not support this operation.",
                subcode=33,
            )
        if method != "POST":
            return graph_error(400, 100, f"Unsupported {method.lower()} request.")
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            return graph_error(400, 100, "Invalid parameter", details="The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return graph_error(400, 100, "Invalid parameter", details="The request body must be a JSON object.")
        if channel == "whatsapp":
            return self._whatsapp(node, payload)
        return self._page(channel, node, payload)

    def _authorized(self, headers: Any, query: str) -> bool:
        scheme, _, token = _header(headers, "Authorization").partition(" ")
        if scheme.lower() != "bearer":
            token = (parse_qs(query).get("access_token") or [""])[0]
        expected = self.access_token.encode("utf-8")
        return bool(expected) and hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected)

    def _channel_of(self, node: str) -> str | None:
        if self.phone_number_id and node == self.phone_number_id:
            return "whatsapp"
        if node == "me" or (self.page_id and node == self.page_id):
            return "messenger"
        if self.instagram_account_id and node == self.instagram_account_id:
            return "instagram"
        return None

    # -- WhatsApp ----------------------------------------------------------------------------------

    def _whatsapp(self, node: str, payload: dict[str, Any]) -> Reply:
        problem = _whatsapp_problem(payload)
        if problem is not None:
            return graph_error(400, 100, "Invalid parameter", details=problem)
        to = payload["to"].lstrip("+")
        message_id = whatsapp_message_id()
        self._record(message_id, "whatsapp", node, payload)
        if self.report_delivery:
            failed = to.endswith(FAILING_SUFFIX)
            steps = [("sent", None), ("failed", UNDELIVERABLE) if failed else ("delivered", None)]
            self._spawn(self._whatsapp_receipts, message_id, to, steps)
        answer: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": to}],
            "messages": [{"id": message_id}],
        }
        if payload["type"] == "template":
            answer["messages"][0]["message_status"] = "accepted"
        return 200, answer, []

    def _whatsapp_receipts(self, message_id: str, to: str, steps: list[tuple[str, dict[str, Any] | None]]) -> None:
        for status, error in steps:
            entry: dict[str, Any] = {
                "id": message_id,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": to,
            }
            if error is not None:
                entry["errors"] = [error]
            value = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": self.display_phone_number,
                    "phone_number_id": self.phone_number_id,
                },
                "statuses": [entry],
            }
            envelope = {
                "object": "whatsapp_business_account",
                "entry": [{"id": self.business_account_id, "changes": [{"value": value, "field": "messages"}]}],
            }
            self._report(message_id, status, envelope)

    # -- Messenger and Instagram -------------------------------------------------------------------

    def _page(self, channel: str, node: str, payload: dict[str, Any]) -> Reply:
        problem = _page_problem(channel, payload)
        if problem is not None:
            return graph_error(400, 100, problem)
        recipient = str(payload["recipient"]["id"])
        if recipient.endswith(FAILING_SUFFIX):
            return graph_error(400, 551, "This person isn't available right now.", subcode=1545041)
        message_id = messenger_message_id()
        self._record(message_id, channel, node, payload)
        if self.report_delivery and channel == "messenger":
            self._spawn(self._messenger_receipt, message_id, recipient)
        return 200, {"recipient_id": recipient, "message_id": message_id}, []

    def _messenger_receipt(self, message_id: str, recipient: str) -> None:
        page = self.page_id or "me"
        now = _now_ms()
        event = {
            "sender": {"id": recipient},
            "recipient": {"id": page},
            "delivery": {"mids": [message_id], "watermark": now},
        }
        envelope = {"object": "page", "entry": [{"id": page, "time": now, "messaging": [event]}]}
        self._report(message_id, "delivered", envelope)

    # -- records and receipts ----------------------------------------------------------------------

    def _record(self, message_id: str, channel: str, node: str, payload: dict[str, Any]) -> None:
        record = {
            "provider": self.provider,
            "id": message_id,
            "channel": channel,
            "node": node,
            "received_at": datetime.now(UTC).isoformat(),
            "request": payload,
            "status": "accepted",
            "callbacks": [],
        }
        with self._lock:
            self._records_by_id[message_id] = record
        if self._sandbox is not None:
            self._sandbox.record(record)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            # The hub records a reply once the send returns: give the answer time to arrive first.
            # (Statuses that still arrive early are kept by the hub and applied when it records.)
            time.sleep(self.receipt_delay)
            target(*args)

        thread = threading.Thread(target=run, name=f"meta-receipt-{args[0][:16]}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def join(self, timeout: float = CALLBACK_TIMEOUT_SECONDS) -> None:
        """Wait for the receipts already under way (tests and shutdown)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _report(self, message_id: str, status: str, envelope: dict[str, Any]) -> None:
        url = self.webhook_url() if callable(self.webhook_url) else self.webhook_url
        outcome: dict[str, Any]
        if not url or not self.app_secret:
            outcome = {"http_status": None, "error": "no webhook_url or app_secret configured"}
        else:
            # Meta sends compact JSON with every non-ASCII character escaped; it signs those bytes.
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=True).encode("ascii")
            outcome = _post(url, body, sign(body, self.app_secret))
        # The record's dict is the one the sandbox keeps: changed under the sandbox's lock.
        lock = getattr(self._sandbox, "_lock", None) or self._lock
        with lock:
            record = self._records_by_id.get(message_id)
            if record is not None:
                record["status"] = status
                record["callbacks"].append({"status": status, **outcome})


def _post(url: str, body: bytes, signature: str) -> dict[str, Any]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": signature,
    }
    return post_callback(url, body, headers)


# --------------------------------------------------------------------------------------------
# Validation: each answers the first problem, worded like Graph's error_data.details


def _whatsapp_problem(payload: dict[str, Any]) -> str | None:
    if payload.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    if payload.get("recipient_type", "individual") != "individual":
        return "Param recipient_type must be 'individual'."
    to = payload.get("to")
    if not isinstance(to, str) or not _TO.fullmatch(to):
        return "The parameter to is required and must be a phone number's digits."
    kind = payload.get("type", "text")
    if kind not in _WHATSAPP_TYPES:
        return f"Param type must be one of {{{', '.join(sorted(_WHATSAPP_TYPES))}}}."
    content = payload.get(kind)
    if not isinstance(content, dict):
        return f"The parameter {kind} is required."
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text.strip():
            return "The parameter text['body'] is required."
        if len(text) > WHATSAPP_MAX_TEXT:
            return f"Param text['body'] must be at most {WHATSAPP_MAX_TEXT} characters long."
        if not isinstance(content.get("preview_url", False), bool):
            return "Param text['preview_url'] must be a boolean."
    elif kind in _WHATSAPP_MEDIA:
        return _media_problem(kind, content)
    elif kind == "template":
        language = content.get("language")
        if not isinstance(content.get("name"), str) or not content["name"]:
            return "The parameter template['name'] is required."
        if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
            return "The parameter template['language']['code'] is required."
        if not isinstance(content.get("components", []), list):
            return "Param template['components'] must be an array."
    elif kind == "interactive":
        return _interactive_problem(content)
    return None


def _interactive_problem(content: dict[str, Any]) -> str | None:
    """WhatsApp's interactive list and reply buttons, as the Cloud API checks them: a list has a
    button label of at most 20 characters and at most 10 rows in all, each row a unique id (at
    most 200) and a title (at most 24); reply buttons are at most 3; a body text of at most 1024."""
    kind = content.get("type")
    body = content.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
        return "The parameter interactive['body']['text'] is required."
    if len(body["text"]) > 1024:
        return "Param interactive['body']['text'] must be at most 1024 characters long."
    action = content.get("action")
    if not isinstance(action, dict):
        return "The parameter interactive['action'] is required."
    if kind == "list":
        button, sections = action.get("button"), action.get("sections")
        if not isinstance(button, str) or not 1 <= len(button) <= 20:
            return "Param interactive['action']['button'] must be 1 to 20 characters long."
        if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
            return "Param interactive['action']['sections'] must hold 1 to 10 sections."
        rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows") or []]
        if not 1 <= len(rows) <= 10:
            return "The total number of rows across sections must be from 1 to 10."
        ids = [row.get("id") if isinstance(row, dict) else None for row in rows]
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not 1 <= len(row["id"]) <= 200:
                return "Param rows['id'] must be 1 to 200 characters long."
            if not isinstance(row.get("title"), str) or not 1 <= len(row["title"]) <= 24:
                return "Param rows['title'] must be 1 to 24 characters long."
        if len(set(ids)) != len(ids):
            return "Row ids must be unique."
        return None
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return "Param interactive['action']['buttons'] must hold 1 to 3 buttons."
        return None
    return "Param interactive['type'] must be one of {list, button}."


def _media_problem(kind: str, content: dict[str, Any]) -> str | None:
    has_link, has_id = "link" in content, "id" in content
    if has_link == has_id:
        return f"Exactly one of {kind}['link'] and {kind}['id'] is required."
    if has_link and not _is_http_url(content["link"]):
        return f"Param {kind}['link'] must be a valid http or https URL."
    if "caption" in content:
        if kind not in _CAPTIONED:
            return f"Param {kind}['caption'] is not supported for {kind} messages."
        if not isinstance(content["caption"], str) or len(content["caption"]) > MAX_CAPTION:
            return f"Param {kind}['caption'] must be a string of at most {MAX_CAPTION} characters."
    return None


def _page_problem(channel: str, payload: dict[str, Any]) -> str | None:
    recipient = payload.get("recipient")
    if not isinstance(recipient, dict) or not isinstance(recipient.get("id"), str | int) or not str(recipient["id"]):
        return "The parameter recipient is required"
    messaging_type = payload.get("messaging_type")
    if messaging_type not in _MESSAGING_TYPES:
        return f"Param messaging_type must be one of {{{', '.join(_MESSAGING_TYPES)}}}"
    if messaging_type == "MESSAGE_TAG" and payload.get("tag") not in _TAGS:
        return f"Param tag must be one of {{{', '.join(_TAGS)}}}"
    message = payload.get("message")
    if not isinstance(message, dict):
        return "The parameter message is required"
    if ("text" in message) == ("attachment" in message):
        return "Exactly one of message[text] and message[attachment] is required"
    if "text" in message:
        limit = MESSENGER_MAX_TEXT if channel == "messenger" else INSTAGRAM_MAX_TEXT
        text = message["text"]
        if not isinstance(text, str) or not text.strip():
            return "Param message[text] must be a non-empty string"
        if len(text) > limit:
            return f"Length of param message[text] must be less than or equal to {limit}"
        return _quick_replies_problem(message.get("quick_replies"))
    attachment = message["attachment"]
    if not isinstance(attachment, dict) or attachment.get("type") not in _ATTACHMENT_TYPES[channel]:
        return f"Param message[attachment][type] must be one of {{{', '.join(_ATTACHMENT_TYPES[channel])}}}"
    content = attachment.get("payload")
    if not isinstance(content, dict):
        return "The parameter message[attachment][payload] is required"
    if "attachment_id" not in content and not _is_http_url(content.get("url")):
        return "Param message[attachment][payload][url] must be a valid http or https URL"
    return None


def _quick_replies_problem(replies: Any) -> str | None:
    """Messenger and Instagram quick replies: at most 13, each a text one with a title of at most
    20 characters and a payload of at most 1000."""
    if replies is None:
        return None
    if not isinstance(replies, list) or not 1 <= len(replies) <= 13:
        return "Param message[quick_replies] must be an array of 1 to 13 quick replies"
    for reply in replies:
        if not isinstance(reply, dict) or reply.get("content_type") not in ("text", "user_phone_number", "user_email"):
            return "Param message[quick_replies][content_type] is invalid"
        if reply["content_type"] == "text":
            title, payload = reply.get("title"), reply.get("payload")
            if not isinstance(title, str) or not 1 <= len(title) <= 20:
                return "Param message[quick_replies][title] must be 1 to 20 characters long"
            if not isinstance(payload, str | int) or len(str(payload)) > 1000:
                return "Param message[quick_replies][payload] must be at most 1000 characters"
    return None
