"""A loopback Telegram Bot API for local runs and tests: send methods checked like Telegram checks them.

Plug it into the provider sandbox and point the hub at it::

    emulator = sandbox.add_emulator(TelegramEmulator(bot_token="123456:ABC-local"))
    TELEGRAM_API_BASE_URL = sandbox.url_for("telegram")   # e.g. http://127.0.0.1:8765/telegram
    TELEGRAM_BOT_TOKEN = "123456:ABC-local"

Every method is ``/bot<token>/<method>`` (method names are case-insensitive, as Telegram's are),
called with GET or POST; parameters come from the query string and from a JSON or form-encoded
body. A token other than the configured one answers 401 ``{"ok": false, "error_code": 401,
"description": "Unauthorized"}``; an unknown method 404 "Not Found". Every answer is Telegram's
envelope: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}``.

Methods
    ``sendMessage``  ``chat_id`` and ``text`` (1-4096 characters; the hub sends no ``parse_mode``,
        so no entities are parsed here): 400 "Bad Request: chat_id is empty", "Bad Request: message
        text is empty", "Bad Request: message is too long".
    ``sendPhoto`` / ``sendDocument``  ``chat_id`` and ``photo`` / ``document`` (an http(s) URL for
        Telegram to fetch, or a file_id), ``caption`` up to 1024 characters: 400 "Bad Request: there
        is no photo in the request" (document), "Bad Request: wrong HTTP URL specified", "Bad
        Request: message caption is too long".
    Success answers the sent Message: ``message_id`` (counting up per chat, as Telegram's do),
    ``from`` (the bot), ``chat``, ``date``, and ``text`` / ``photo`` sizes / ``document`` / ``caption``.

    BLOCKED USERS: a ``chat_id`` in ``blocked`` (default ``666``) answers 403 "Forbidden: bot was
    blocked by the user", as Telegram does once a user has blocked the bot. ``fail_next(status)``
    makes the next send answer that status (429 comes with ``parameters.retry_after``).

    ``answerCallbackQuery``  ``callback_query_id`` of a button tap Telegram issued (one in an
        Update given to ``deliver`` or ``issue``), answered once and within ``callback_ttl`` seconds
        (default 15), as Telegram allows: else 400 "Bad Request: query is too old and response
        timeout expired or query ID is invalid"; none at all is "Bad Request: QUERY_ID_INVALID".
        Optional ``text`` up to 200 characters ("Bad Request: MESSAGE_TOO_LONG"), ``show_alert`` a
        boolean, ``url``, ``cache_time`` a whole number of seconds. Answers ``true``. ``fail_next``
        does not apply: it is for sends.

    ``getMe`` the bot's User. ``setWebhook`` (``url``, optional ``secret_token`` of 1-256 characters
    ``A-Z a-z 0-9 _ -``, ``allowed_updates``, ``drop_pending_updates``) and ``deleteWebhook`` /
    ``getWebhookInfo``: what a bot's setup looks like. Telegram takes only HTTPS webhook URLs; the
    sandbox also takes http:// on loopback hosts, so ``deliver(update)`` can POST an Update to a hub
    running on this machine with the ``X-Telegram-Bot-Api-Secret-Token`` header, as Telegram does.

Accepted sends are recorded in the sandbox (``GET /sandbox/messages?provider=telegram``) as
``{"provider": "telegram", "id": "<chat id>:<message id>", "method", "chat_id", "request",
"result", "received_at", "status": "sent", "callbacks": []}``; an answered button tap as
``{"provider": "telegram", "id": "callback:<query id>", "method": "answerCallbackQuery", "chat_id",
"request", "result": true, "received_at", "status": "answered", "callbacks": []}``.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["TelegramEmulator", "callback_update", "text_update", "webhook_headers"]

MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
MAX_CALLBACK_ANSWER_CHARS = 200  # answerCallbackQuery text: 0-200 characters
DEFAULT_CALLBACK_TTL = 15.0  # seconds a callback query stays answerable (Telegram documents none; ~10-15 s)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
DEFAULT_BLOCKED = ("666",)

_PATH = re.compile(r"/bot([^/]*)/([A-Za-z]+)")
_CHAT_ID = re.compile(r"-?\d{1,16}|@[A-Za-z][A-Za-z0-9_]{3,31}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{16,256}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

Answer = tuple[int, Any, list[tuple[str, str]]]


def _ok(result: Any, description: str | None = None) -> Answer:
    payload: dict[str, Any] = {"ok": True, "result": result}
    if description:
        payload["description"] = description
    return 200, payload, []


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> Answer:
    payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return code, payload, []


def webhook_headers(secret_token: str) -> dict[str, str]:
    """The headers Telegram sends with every webhook request once `secret_token` is set."""
    return {"Content-Type": "application/json", SECRET_HEADER: secret_token}


def text_update(update_id: int, user_id: int, text: str, first_name: str = "Ada", message_id: int = 1) -> dict:
    """A private-chat text message Update, shaped as Telegram sends it."""
    user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": user,
        "chat": {"id": user_id, "first_name": first_name, "type": "private"},
        "date": int(time.time()),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    return {"update_id": update_id, "message": message}


def callback_update(
    update_id: int,
    user_id: int,
    data: str,
    query_id: str | None = None,
    first_name: str = "Ada",
    message_id: int = 1,
    message_text: str = "How did we do?",
) -> dict:
    """A tap on an inline button under the bot's message `message_id` in a private chat, shaped as
    Telegram sends the Update (CallbackQuery: id, from, message, chat_instance, data)."""
    user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    chat = {"id": user_id, "first_name": first_name, "type": "private"}
    bot = {"id": 7000000001, "is_bot": True, "first_name": "omnihub sandbox", "username": "omnihub_sandbox_bot"}
    message = {"message_id": message_id, "from": bot, "chat": chat, "date": int(time.time()), "text": message_text}
    query = {
        "id": query_id or str(zlib.crc32(f"{update_id}:{user_id}".encode()) * 1000 + update_id % 1000),
        "from": user,
        "message": message,
        "chat_instance": str(-(zlib.crc32(str(user_id).encode()) + 10**18)),
        "data": data,
    }
    return {"update_id": update_id, "callback_query": query}


class TelegramEmulator:
    """Telegram's Bot API send methods, served by the provider sandbox under ``/telegram``."""

    prefix = "telegram"
    provider = "telegram"

    def __init__(
        self,
        bot_token: str,
        *,
        blocked: tuple[str, ...] | list[str] = DEFAULT_BLOCKED,
        username: str = "omnihub_sandbox_bot",
        first_name: str = "omnihub sandbox",
        callback_ttl: float = DEFAULT_CALLBACK_TTL,
    ) -> None:
        self.bot_token = bot_token
        self.callback_ttl = callback_ttl
        self.blocked = {str(chat) for chat in blocked}
        head = bot_token.split(":", 1)[0]
        self.bot = {
            "id": int(head) if head.isdigit() and len(head) <= 15 else 7000000001,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._lock = threading.Lock()
        self._sandbox: Any = None
        self._message_ids: dict[str, itertools.count[int]] = {}
        self._failures: list[int] = []
        # Button taps Telegram issued: query id -> (chat id, when issued, answered yet).
        self._queries: dict[str, tuple[str, float, bool]] = {}
        self.webhook: dict[str, Any] = {"url": "", "secret_token": None, "allowed_updates": None}

    # -- what tests and local tools use --------------------------------------------------------

    def attach(self, sandbox: Any) -> None:
        self._sandbox = sandbox

    def reset(self) -> None:
        """Forget message counters, forced failures and the webhook (records live in the sandbox)."""
        with self._lock:
            self._message_ids.clear()
            self._failures.clear()
            self._queries.clear()
            self.webhook = {"url": "", "secret_token": None, "allowed_updates": None}

    def fail_next(self, status: int) -> None:
        """The next send answers `status` (429 with retry_after, 5xx, ...) and sends nothing."""
        with self._lock:
            self._failures.append(status)

    def issue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Make the update's button tap one Telegram issued (so answerCallbackQuery takes its id, once,
        within `callback_ttl`); for a test that posts the update to the hub itself. Returns it."""
        query = update.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("id"), str):
            message = query.get("message") if isinstance(query.get("message"), dict) else {}
            chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
            with self._lock:
                self._queries[query["id"]] = (str(chat.get("id", "")), time.monotonic(), False)
        return update

    def deliver(self, update: dict[str, Any], timeout: float = 10.0) -> tuple[int, str]:
        """POST `update` to the webhook set with setWebhook, with its secret token, as Telegram does."""
        self.issue(update)
        url, secret_token = self.webhook["url"], self.webhook["secret_token"]
        if not url:
            raise RuntimeError("no webhook is set: call setWebhook first")
        headers = {"Content-Type": "application/json"}
        if secret_token:
            headers[SECRET_HEADER] = secret_token
        body = json.dumps(update).encode("utf-8")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode("utf-8", "replace")

    # -- the sandbox's entry point -------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Answer:
        match = _PATH.fullmatch(path)
        if match is None:
            return _error(404, "Not Found")
        if not hmac.compare_digest(match.group(1).encode(), self.bot_token.encode()):
            return _error(401, "Unauthorized")
        if method not in ("GET", "POST"):
            return _error(405, "Method Not Allowed")
        params = _params(query, headers, body)
        if params is None:
            return _error(400, "Bad Request: can't parse request body")
        api = match.group(2).lower()
        if api == "getme":
            return _ok(dict(self.bot))
        if api == "setwebhook":
            return self._set_webhook(params)
        if api == "deletewebhook":
            with self._lock:
                self.webhook = {"url": "", "secret_token": None, "allowed_updates": None}
            return _ok(True, "Webhook was deleted")
        if api == "getwebhookinfo":
            with self._lock:
                info = {"url": self.webhook["url"], "has_custom_certificate": False, "pending_update_count": 0}
                if self.webhook["url"]:
                    info["max_connections"] = 40
                if self.webhook["allowed_updates"] is not None:
                    info["allowed_updates"] = self.webhook["allowed_updates"]
            return _ok(info)  # the secret token is never shown, as Telegram never shows it
        if api in ("sendmessage", "sendphoto", "senddocument"):
            return self._send(api, params)
        if api == "answercallbackquery":
            return self._answer_callback(params)
        return _error(404, "Not Found")

    # -- methods -------------------------------------------------------------------------------

    def _set_webhook(self, params: dict[str, Any]) -> Answer:
        url = params.get("url")
        url = "" if url is None else str(url)
        secret_token = params.get("secret_token")
        if secret_token is not None and not _SECRET_TOKEN.fullmatch(str(secret_token)):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            try:
                allowed = json.loads(allowed)
            except ValueError:
                return _error(400, "Bad Request: can't parse allowed updates JSON object")
        if url:
            try:
                parts = urlsplit(url)
            except ValueError:
                return _error(400, "Bad Request: bad webhook: invalid URL")
            loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
            if not (parts.scheme == "https" and parts.hostname) and not loopback:
                return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self.webhook = {
                "url": url,
                "secret_token": str(secret_token) if secret_token is not None and url else None,
                "allowed_updates": allowed if url else None,
            }
        return _ok(True, "Webhook was set" if url else "Webhook was deleted")

    def _answer_callback(self, params: dict[str, Any]) -> Answer:
        query_id = str(params.get("callback_query_id") or "").strip()
        if not query_id:
            return _error(400, "Bad Request: QUERY_ID_INVALID")
        text = params.get("text")
        if text is not None and len(str(text)) > MAX_CALLBACK_ANSWER_CHARS:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        show_alert = params.get("show_alert")
        if show_alert is not None and show_alert not in (True, False, "true", "false", "True", "False"):
            return _error(400, 'Bad Request: can\'t parse "show_alert" as Boolean')
        cache_time = params.get("cache_time")
        if cache_time is not None and (isinstance(cache_time, bool) or not str(cache_time).lstrip("-").isdigit()):
            return _error(400, 'Bad Request: can\'t parse "cache_time" as Integer')
        with self._lock:
            issued = self._queries.get(query_id)
            if issued is None or issued[2] or time.monotonic() - issued[1] > self.callback_ttl:
                return _error(400, QUERY_TOO_OLD)
            chat_id = issued[0]
            self._queries[query_id] = (chat_id, issued[1], True)
        if self._sandbox is not None:
            self._sandbox.record(
                {
                    "provider": self.provider,
                    "id": f"callback:{query_id}",
                    "method": "answerCallbackQuery",
                    "chat_id": chat_id,
                    "request": params,
                    "result": True,
                    "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "status": "answered",
                    "callbacks": [],
                }
            )
        return _ok(True)

    def _send(self, api: str, params: dict[str, Any]) -> Answer:
        chat_id = str(params.get("chat_id", "")).strip()
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if not _CHAT_ID.fullmatch(chat_id):
            return _error(400, "Bad Request: chat not found")
        content: dict[str, Any]
        if api == "sendmessage":
            text = params.get("text")
            text = "" if text is None else str(text)
            if not text.strip():
                return _error(400, "Bad Request: message text is empty")
            if len(text) > MAX_TEXT_CHARS:
                return _error(400, "Bad Request: message is too long")
            content = {"text": text}
        else:
            field = "photo" if api == "sendphoto" else "document"
            source = params.get(field)
            source = "" if source is None else str(source).strip()
            if not source:
                return _error(400, f"Bad Request: there is no {field} in the request")
            if "://" in source:
                parts = urlsplit(source)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    return _error(400, "Bad Request: wrong HTTP URL specified")
            elif not _FILE_ID.fullmatch(source):
                return _error(400, "Bad Request: wrong remote file identifier specified: Wrong string length")
            caption = params.get("caption")
            caption = "" if caption is None else str(caption)
            if len(caption) > MAX_CAPTION_CHARS:
                return _error(400, "Bad Request: message caption is too long")
            content = {field: _file_object(field, source)}
            if caption:
                content["caption"] = caption
        markup_problem = _reply_markup_problem(params.get("reply_markup"))
        if markup_problem:
            return _error(400, markup_problem)
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                return _error(status, _failure_text(status), {"retry_after": 3} if status == 429 else None)
            if chat_id in self.blocked:
                return _error(403, "Forbidden: bot was blocked by the user")
            counter = self._message_ids.setdefault(chat_id, itertools.count(1))
            message_id = next(counter)
        chat_ref: int | str = int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
        chat = {"id": chat_ref, "type": "private", "first_name": "Sandbox customer"}
        result = {"message_id": message_id, "from": dict(self.bot), "chat": chat, "date": int(time.time()), **content}
        if self._sandbox is not None:
            self._sandbox.record(
                {
                    "provider": self.provider,
                    "id": f"{chat_id}:{message_id}",
                    "method": {"sendmessage": "sendMessage", "sendphoto": "sendPhoto"}.get(api, "sendDocument"),
                    "chat_id": chat_id,
                    "request": params,
                    "result": result,
                    "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "status": "sent",
                    "callbacks": [],
                }
            )
        return _ok(result)


def _failure_text(status: int) -> str:
    if status == 429:
        return "Too Many Requests: retry after 3"
    if status >= 500:
        return "Internal Server Error"
    return "Bad Request: forced failure"


def _file_object(field: str, source: str) -> Any:
    """What Telegram answers for a file it accepted: sizes of a photo, or a Document."""
    stamp = f"sandbox{zlib.crc32(source.encode('utf-8')):010d}"
    if field == "photo":
        return [
            {"file_id": f"AgAC{stamp}{tag}", "file_unique_id": f"AQ{stamp}{tag}", "width": side, "height": side}
            for tag, side in (("s", 90), ("m", 320))
        ]
    name = urlsplit(source).path.rsplit("/", 1)[-1] if "://" in source else "file"
    return {"file_name": name or "file", "file_id": f"BQAC{stamp}", "file_unique_id": f"AgA{stamp}", "file_size": 4096}


def _params(query: str, headers: Any, body: bytes) -> dict[str, Any] | None:
    """Parameters from the query string, then the body (JSON object or form-encoded), as Telegram reads them."""
    params: dict[str, Any] = dict(parse_qsl(query or "", keep_blank_values=True))
    if not body:
        return params
    content_type = str(headers.get("Content-Type") or headers.get("content-type") or "")
    content_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        params.update(data)
    elif content_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(text, keep_blank_values=True))
    else:
        return None  # multipart uploads are not emulated: the hub sends files by URL
    return params


def _reply_markup_problem(markup: Any) -> str | None:
    """An inline keyboard as the Bot API checks it: an array of rows of buttons, each with a text
    and exactly one action; callback_data is 1 to 64 bytes."""
    if markup is None:
        return None
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return "Bad Request: can't parse reply keyboard markup JSON object"
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
                return 'Bad Request: can\'t find field "text"'
            actions = [key for key in ("callback_data", "url", "switch_inline_query") if key in button]
            if len(actions) != 1:
                return "Bad Request: inline keyboard button must have exactly one optional field"
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                return "Bad Request: BUTTON_DATA_INVALID"
    return None
