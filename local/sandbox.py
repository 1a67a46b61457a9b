"""Provider sandbox: a loopback stand-in for Twilio Messaging and SendGrid Mail Send.

Local mode (``make run``) and the test suite point the *real* ``twilio`` and ``sendgrid`` Python
clients at this server when no real credentials are configured. It validates requests the way the
real providers do (so a request that would fail in production fails here too, with the provider's
status code and error body) and records every accepted request for inspection over HTTP.

Standard library only, so it starts in milliseconds and can run anywhere the hub runs.

Twilio Programmable Messaging (API version 2010-04-01)
    ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``  form-encoded create, HTTP Basic auth
        with ``AccountSid:AuthToken``. Checks, in order (error code in brackets): To present
        [21604]; From or MessagingServiceSid present [21603]; MessagingServiceSid shaped ``MG`` +
        32 hex [21705]; To is E.164 (optionally ``whatsapp:``/``rcs:`` prefixed) [21211]; From is
        E.164, a short code or an alphanumeric sender ID [21212]; To and From use the same channel,
        e.g. both ``whatsapp:`` or neither, unless a Messaging Service is used [21910]; one of Body,
        MediaUrl or ContentSid present [21602, or 21619 with a Messaging Service]; Body at most
        1600 characters [21617]; at most 10 MediaUrl [21623], each an http(s) URL [21620];
        StatusCallback an http(s) URL [21609]. Bad credentials, or an AccountSid in the path that
        is not the configured one, give 401 with code 20003. A body that is not form-encoded is
        ignored (real Twilio then answers 21604, "To is required").
        Success is 201 with a Message resource: sid ``SM`` + 32 hex (``MM`` when media is attached,
        as Twilio does), status ``queued`` (``accepted`` when sent through a Messaging Service).
    ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json``  fetch, with the current status;
        404 with code 20404 if unknown.
    ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``  list (newest first, one page;
        ``To``/``From``/``PageSize`` filters).
    Errors use Twilio's body: ``{"code", "message", "more_info", "status"}``.

Simulated delivery and status callbacks
    With ``simulate_status_callbacks`` on (the default) each accepted message moves through its
    lifecycle in a background thread right after the 201: ``queued`` (Messaging Service only),
    ``sent``, then ``delivered``. If the create request carried ``StatusCallback``, each step is
    POSTed there form-encoded, with Twilio's parameters (MessageSid, SmsSid, MessageStatus,
    SmsStatus, AccountSid, From, To, ApiVersion, MessagingServiceSid when used, ErrorCode on
    failure) and an ``X-Twilio-Signature`` header computed with the auth token over the callback
    URL exactly as given followed by the sorted parameters. Delivery problems (connection refused,
    timeouts, non-2xx answers) are recorded on the message, never raised.

    FORCED FAILURE: a ``To`` number ending in ``0000`` (e.g. ``+15550000000`` or
    ``whatsapp:+447700900000``) goes ``sent`` then ``undelivered`` with ErrorCode 30003
    (unreachable handset). Use it to exercise failure paths locally.

    With ``simulate_status_callbacks=False`` messages stay in their initial status and no callback
    is sent.

SendGrid v3 Mail Send
    ``POST /v3/mail/send``  JSON body, ``Authorization: Bearer <api key>``. Missing or wrong key
    gives 401. The body is validated like the real API (personalizations with a ``to`` list of valid
    addresses, ``from.email``, ``subject`` unless a template or every personalization supplies one,
    ``content`` blocks with non-empty values unless ``template_id`` is set, text/plain then
    text/html ordering, attachments); every problem is reported in one 400 as
    ``{"errors": [{"message", "field", "help"}]}``. Success is 202 with an empty body and an
    ``X-Message-Id`` header (22 characters). ``mail_settings.sandbox_mode.enable`` gives 200 and
    the message is recorded as not queued, as SendGrid does.

Inspection
    ``GET /sandbox/messages[?provider=twilio|sendgrid]`` returns ``{"messages": [record, ...]}``,
    oldest first; ``DELETE /sandbox/messages`` clears them; ``GET /sandbox/health`` returns
    ``{"status": "ok"}``. A record is ``{"provider", "id", "received_at", "request", "status",
    "callbacks": [{"status", "http_status", "error"}]}``; ``request`` holds the form parameters
    (``MediaUrl`` always a list) or the JSON body.

Unknown paths answer 404 and wrong methods 405, in the owning provider's error shape under
``/2010-04-01`` and ``/v3``, otherwise ``{"error", "status"}``. Malformed bodies answer 400. The
server writes nothing to stderr.

Pointing the real clients here (``sandbox.url`` is e.g. ``http://127.0.0.1:8765``)::

    sendgrid.SendGridAPIClient(api_key, host=sandbox.url)

    class SandboxHttpClient(twilio.http.http_client.TwilioHttpClient):
        def __init__(self, base_url):
            super().__init__()
            self._base = urllib.parse.urlsplit(base_url)
        def request(self, method, url, *args, **kwargs):
            url = urllib.parse.urlsplit(url)._replace(scheme=self._base.scheme, netloc=self._base.netloc)
            return super().request(method, urllib.parse.urlunsplit(url), *args, **kwargs)

    twilio.rest.Client(account_sid, auth_token, http_client=SandboxHttpClient(sandbox.url))

Run it on its own with ``python -m local.sandbox --port 8765`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import functools
import hashlib
import hmac
import http.client
import json
import math
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

__all__ = ["ProviderSandbox", "twilio_signature"]

TWILIO_API_VERSION = "2010-04-01"
FAILING_NUMBER_SUFFIX = "0000"
UNDELIVERED_ERROR_CODE = 30003
UNDELIVERED_ERROR_MESSAGE = "Unreachable destination handset"
# Sender the sandbox "assigns" when a Messaging Service is used without From.
SERVICE_SENDER = "+15005550006"

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_TWILIO_BODY_CHARS = 1600
MAX_MEDIA_URLS = 10
MAX_CALLBACK_URL_CHARS = 4000
CALLBACK_TIMEOUT_SECONDS = 5.0
SENDGRID_MAX_PERSONALIZATIONS = 1000
SENDGRID_MAX_RECIPIENTS = 1000

_TWILIO_ERRORS_DOC = "https://www.twilio.com/docs/errors/"
_SENDGRID_ERRORS_DOC = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"

_E164 = re.compile(r"\+[1-9]\d{1,14}")
_SHORT_CODE = re.compile(r"\d{3,8}")
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_CHANNEL_ADDRESS = re.compile(r"([a-z]+):(.+)")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ACCOUNT_IN_PATH = re.compile(r"/2010-04-01/Accounts/([^/]+?)(?:\.json)?(?:/.*)?")
_TWILIO_MESSAGES = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")
_TWILIO_MESSAGE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json")

# Channels whose addresses are phone numbers in E.164 form.
_PHONE_CHANNELS = frozenset({"sms", "whatsapp", "rcs"})
# Form parameters Twilio accepts more than once; recorded as lists even when sent once.
_REPEATABLE_PARAMS = frozenset({"MediaUrl", "PersistentAction"})

# GSM 03.38 default alphabet and its extension table (extension characters cost two septets).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def twilio_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """X-Twilio-Signature for a form-encoded request to ``url`` carrying ``params``.

    base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...)) with parameters sorted
    by name (code point order); a name sent several times contributes each of its values, sorted.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    payload = url + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)


def _is_http_url(value: str, max_length: int | None = None) -> bool:
    if not value or (max_length is not None and len(value) > max_length):
        return False
    if any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _split_channel(address: str) -> tuple[str, str]:
    """``whatsapp:+1555...`` -> ("whatsapp", "+1555..."); a bare number is channel "sms"."""
    match = _CHANNEL_ADDRESS.fullmatch(address)
    if match:
        return match.group(1), match.group(2)
    return "sms", address


def _sms_segments(body: str) -> int:
    if not body:
        return 1
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in body):
        septets = sum(2 if ch in _GSM7_EXTENSION else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def _valid_email(value: object) -> bool:
    return isinstance(value, str) and _EMAIL.fullmatch(value) is not None


def _first(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def _as_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # run once the response has been written
    close: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
        body = json.dumps(payload).encode("utf-8")
        return cls(status, body, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])])


def _twilio_error(status: int, code: int, message: str, headers: list[tuple[str, str]] | None = None):
    payload = {"code": code, "message": message, "more_info": f"{_TWILIO_ERRORS_DOC}{code}", "status": status}
    return _Response.json(status, payload, headers)


def _sendgrid_errors(status: int, errors: list[dict[str, Any]], headers=None) -> _Response:
    return _Response.json(status, {"errors": errors}, headers)


def _sendgrid_error(field_name: str | None, message: str) -> dict[str, Any]:
    help_url = None
    if field_name is not None:
        anchor = field_name.split(".")[0]
        help_url = f"{_SENDGRID_ERRORS_DOC}#{anchor.replace('_', '-')}"
    return {"message": message, "field": field_name, "help": help_url}


def _plain_error(status: int, message: str, headers=None) -> _Response:
    return _Response.json(status, {"error": message, "status": status}, headers)


def post_callback(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """POST a provider callback to the hub: `{"http_status", "error"}`, never an exception (a
    failed delivery is recorded, as the providers record it)."""
    connection: http.client.HTTPConnection | None = None
    try:
        parts = urlsplit(url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.hostname or "", parts.port, timeout=CALLBACK_TIMEOUT_SECONDS)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        error = None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        return {"http_status": answer.status, "error": error}
    except Exception as exc:  # any delivery failure is recorded, never raised
        return {"http_status": None, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if connection is not None:
            connection.close()


class _BadRequest(Exception):
    """Raised while reading a request whose framing is broken."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: ProviderSandbox

    def handle_error(self, request, client_address):
        # A client vanished mid-request or similar: nothing useful to report, and stderr stays clean.
        return


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "omnihub-provider-sandbox/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are dropped after this many seconds
    server: _Server

    def log_message(self, format, *args):
        return

    def __getattr__(self, name: str):
        # Every HTTP method is routed through _dispatch so unsupported ones get a JSON 405, not 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code, message=None, explain=None):
        # Used by the stdlib for malformed request lines/headers: answer in JSON and hang up.
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # unparseable request line: still answer with a status line
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        body = json.dumps({"error": message or phrase, "status": code}).encode("utf-8")
        self.send_response(code, phrase)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as problem:
            self._write(_plain_error(problem.status, problem.message), close=True)
            return
        except OSError:
            self.close_connection = True
            return
        try:
            response = self.server.sandbox._route(self.command, self.path, self.headers, body)
        except Exception:  # safety net: a sandbox bug must not leak a traceback to the client
            response = _plain_error(500, "internal sandbox error")
        try:
            self._write(response, close=response.close)
        finally:
            if response.after is not None:  # the request was accepted even if the client hung up
                response.after()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length.strip())
        except ValueError:
            raise _BadRequest(400, "invalid Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest(400, "request body shorter than Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "malformed chunked body") from None
            if size < 0:
                raise _BadRequest(400, "malformed chunked body")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # discard trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequest(413, "request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BadRequest(400, "malformed chunked body")
            chunks.append(chunk)
            self.rfile.readline(1024)  # CRLF after each chunk

    def _write(self, response: _Response, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------


class ChatEmulator(Protocol):
    """A chat app's API emulator plugged into the sandbox (see local/chat_sandbox/)."""

    prefix: str  # served under /<prefix>/
    provider: str  # the `provider` of its records

    def attach(self, sandbox: ProviderSandbox) -> None: ...

    def handle(
        self, method: str, path: str, query: str, headers: Any, body: bytes
    ) -> tuple[int, Any, Iterable[tuple[str, str]]]:
        """(status, JSON-able payload or raw bytes, extra headers) for a request under the prefix."""
        ...


class ProviderSandbox:
    """Loopback Twilio + SendGrid stand-in. ``start()`` serves in a daemon thread, ``stop()`` ends it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        twilio_account_sid: str,
        twilio_auth_token: str,
        sendgrid_api_key: str,
        simulate_status_callbacks: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.twilio_account_sid = twilio_account_sid
        self.twilio_auth_token = twilio_auth_token
        self.sendgrid_api_key = sendgrid_api_key
        self.simulate_status_callbacks = simulate_status_callbacks

        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._twilio_messages: dict[str, dict[str, Any]] = {}  # sid -> Message resource
        self._twilio_records: dict[str, dict[str, Any]] = {}  # sid -> record (also in _records)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._delivery_threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Chat-app emulators (local/chat_sandbox/*.py), each served under /<prefix>/.
        self._emulators: dict[str, ChatEmulator] = {}

    def add_emulator(self, emulator: ChatEmulator) -> ChatEmulator:
        """Serve a chat app's API under `/<emulator.prefix>/`; its base URL is `url_for(prefix)`."""
        emulator.attach(self)
        self._emulators[emulator.prefix] = emulator
        return emulator

    def url_for(self, prefix: str) -> str:
        return f"{self.url}/{prefix}"

    def record(self, record: dict[str, Any]) -> None:
        """Keep an accepted request (with at least `provider` and `id`) for `/sandbox/messages`."""
        with self._lock:
            self._records.append(record)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ProviderSandbox:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self.port), _Handler)
        server.sandbox = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving, then wait for the status callbacks under way: each up to its own timeout,
        or, with `timeout`, all of them within that many seconds (the rest are daemon threads,
        abandoned with the process)."""
        server, self._server = self._server, None
        if server is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout

        def budget(limit: float) -> float:
            return limit if deadline is None else max(0.0, min(limit, deadline - time.monotonic()))

        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=budget(5))
            self._thread = None
        with self._lock:
            threads, self._delivery_threads = self._delivery_threads, []
        for thread in threads:
            thread.join(timeout=budget(CALLBACK_TIMEOUT_SECONDS))

    def __enter__(self) -> ProviderSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        host, port = self._server.server_address[:2]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- inspection ----------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._records)

    def clear(self) -> int:
        with self._lock:
            count = len(self._records)
            self._records.clear()
            self._twilio_messages.clear()
            self._twilio_records.clear()
            return count

    # -- routing -------------------------------------------------------------------------------

    def _route(self, method: str, raw_path: str, headers, body: bytes) -> _Response:
        try:
            parts = urlsplit(raw_path)
        except ValueError:
            return _plain_error(400, "malformed request target")
        path = parts.path
        if path == "/sandbox" or path.startswith("/sandbox/"):
            return self._route_sandbox(method, path, parts.query)
        if path == "/2010-04-01" or path.startswith("/2010-04-01/"):
            return self._route_twilio(method, path, parts.query, headers, body)
        if path == "/v3" or path.startswith("/v3/"):
            return self._route_sendgrid(method, path, headers, body)
        prefix, _, rest = path.lstrip("/").partition("/")
        emulator = self._emulators.get(prefix)
        if emulator is not None:
            status, payload, extra_headers = emulator.handle(method, "/" + rest, parts.query, headers, body)
            if isinstance(payload, bytes):
                return _Response(status, payload, list(extra_headers))
            return _Response.json(status, payload, list(extra_headers))
        return _plain_error(404, f"no such endpoint: {path}")

    def _route_sandbox(self, method: str, path: str, query: str) -> _Response:
        if path == "/sandbox/health":
            if method != "GET":
                return _plain_error(405, "method not allowed", [("Allow", "GET")])
            return _Response.json(200, {"status": "ok"})
        if path == "/sandbox/messages":
            if method == "GET":
                providers = parse_qs(query).get("provider", [])
                known = ("twilio", "sendgrid", *(e.provider for e in self._emulators.values()))
                unknown = [p for p in providers if p not in known]
                if unknown:
                    return _plain_error(400, "provider must be one of " + ", ".join(known))
                records = self.records()
                if providers:
                    records = [r for r in records if r["provider"] in providers]
                return _Response.json(200, {"messages": records})
            if method == "DELETE":
                return _Response.json(200, {"cleared": self.clear()})
            return _plain_error(405, "method not allowed", [("Allow", "GET, DELETE")])
        return _plain_error(404, f"no such endpoint: {path}")

    # -- Twilio --------------------------------------------------------------------------------

    def _twilio_authorized(self, headers, path: str) -> bool:
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        username, sep, password = decoded.partition(":")
        if not sep:
            return False
        ok = hmac.compare_digest(username.encode(), self.twilio_account_sid.encode())
        ok &= hmac.compare_digest(password.encode(), self.twilio_auth_token.encode())
        match = _ACCOUNT_IN_PATH.fullmatch(path)
        if match and match.group(1) != self.twilio_account_sid:
            return False
        return ok

    def _route_twilio(self, method: str, path: str, query: str, headers, body: bytes) -> _Response:
        if not self._twilio_authorized(headers, path):
            return _twilio_error(401, 20003, "Authenticate", [("WWW-Authenticate", 'Basic realm="Twilio API"')])
        if _TWILIO_MESSAGES.fullmatch(path):
            if method == "POST":
                return self._twilio_create(headers, body)
            if method == "GET":
                return self._twilio_list(query)
            return _twilio_error(405, 20004, "Method not allowed", [("Allow", "GET, POST")])
        match = _TWILIO_MESSAGE.fullmatch(path)
        if match:
            if method != "GET":
                return _twilio_error(405, 20004, "Method not allowed", [("Allow", "GET")])
            with self._lock:
                resource = copy.deepcopy(self._twilio_messages.get(match.group(2)))
            if resource is None:
                return _twilio_error(404, 20404, f"The requested resource {path} was not found")
            return _Response.json(200, resource)
        return _twilio_error(404, 20404, f"The requested resource {path} was not found")

    def _twilio_list(self, query: str) -> _Response:
        filters = parse_qs(query)
        try:
            page_size = max(1, min(1000, int(filters.get("PageSize", ["50"])[0])))
        except ValueError:
            page_size = 50
        with self._lock:
            messages = [copy.deepcopy(m) for m in reversed(self._twilio_messages.values())]
        for name, key in (("To", "to"), ("From", "from")):
            if name in filters:
                messages = [m for m in messages if m[key] == filters[name][0]]
        messages = messages[:page_size]
        uri = f"/{TWILIO_API_VERSION}/Accounts/{self.twilio_account_sid}/Messages.json?PageSize={page_size}&Page=0"
        return _Response.json(
            200,
            {
                "messages": messages,
                "end": max(len(messages) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            },
        )

    def _parse_form(self, headers, body: bytes) -> dict[str, Any] | None:
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}  # Twilio ignores bodies it cannot read as a form
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return None
        params: dict[str, Any] = {}
        for name, value in pairs:
            if name in _REPEATABLE_PARAMS:
                params.setdefault(name, []).append(value)
            elif name in params:
                existing = params[name]
                params[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
            else:
                params[name] = value
        return params

    def _twilio_validate(self, params: dict[str, Any]) -> _Response | None:
        to = _first(params, "To")
        from_ = _first(params, "From")
        service_sid = _first(params, "MessagingServiceSid")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not from_ and not service_sid:
            return _twilio_error(
                400, 21603, "A 'From' phone number or a 'MessagingServiceSid' is required to send a message."
            )
        if service_sid and not _MESSAGING_SERVICE_SID.fullmatch(service_sid):
            return _twilio_error(400, 21705, f"The Messaging Service Sid {service_sid} is invalid.")
        from_is_service = bool(_MESSAGING_SERVICE_SID.fullmatch(from_))
        uses_service = bool(service_sid) or from_is_service

        to_channel, to_address = _split_channel(to)
        if to_channel in _PHONE_CHANNELS and not _E164.fullmatch(to_address):
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ and not from_is_service:
            from_channel, from_address = _split_channel(from_)
            if from_channel == "sms":
                valid_from = any(p.fullmatch(from_address) for p in (_E164, _SHORT_CODE, _ALPHANUMERIC_SENDER))
            elif from_channel in _PHONE_CHANNELS:
                valid_from = _E164.fullmatch(from_address) is not None
            else:
                valid_from = True
            if not valid_from:
                message = (
                    f"The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID."
                )
                return _twilio_error(400, 21212, message)
            if not uses_service and from_channel != to_channel:
                return _twilio_error(400, 21910, "Invalid From and To pair. From and To should be of the same channel.")

        body = _first(params, "Body")
        media = [url for url in _as_list(params, "MediaUrl") if url]
        content_sid = _first(params, "ContentSid")
        if not body and not media and not content_sid:
            if uses_service:
                return _twilio_error(400, 21619, "A text message body, media URL or Content SID is required.")
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_TWILIO_BODY_CHARS:
            return _twilio_error(
                400, 21617, f"The concatenated message body exceeds the {MAX_TWILIO_BODY_CHARS} character limit."
            )
        if len(media) > MAX_MEDIA_URLS:
            return _twilio_error(400, 21623, f"Number of media files exceeds allowed limit of {MAX_MEDIA_URLS}.")
        if any(not _is_http_url(url) for url in media):
            return _twilio_error(400, 21620, "Invalid media URL(s).")
        callback = _first(params, "StatusCallback")
        if callback and not _is_http_url(callback, MAX_CALLBACK_URL_CHARS):
            return _twilio_error(400, 21609, "Invalid 'StatusCallback' URL.")
        return None

    def _twilio_create(self, headers, raw_body: bytes) -> _Response:
        params = self._parse_form(headers, raw_body)
        if params is None:
            return _twilio_error(400, 70002, "Bad request: the body is not valid UTF-8 form data.")
        problem = self._twilio_validate(params)
        if problem is not None:
            return problem

        now = _utcnow()
        to = _first(params, "To")
        from_ = _first(params, "From")
        service_sid = _first(params, "MessagingServiceSid")
        if not service_sid and _MESSAGING_SERVICE_SID.fullmatch(from_):
            service_sid, from_ = from_, ""
        body = _first(params, "Body")
        media = [url for url in _as_list(params, "MediaUrl") if url]
        channel, _ = _split_channel(to)
        sid = ("MM" if media else "SM") + uuid.uuid4().hex
        segments = 1 if channel != "sms" or media else _sms_segments(body)
        base_uri = f"/{TWILIO_API_VERSION}/Accounts/{self.twilio_account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.twilio_account_sid,
            "api_version": TWILIO_API_VERSION,
            "body": body,
            "date_created": _rfc2822(now),
            "date_sent": None,
            "date_updated": _rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service_sid or None,
            "num_media": str(len(media)),
            "num_segments": "0" if service_sid else str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service_sid else "queued",
            "subresource_uris": {"media": f"{base_uri}/Media.json", "feedback": f"{base_uri}/Feedback.json"},
            "to": to,
            "uri": f"{base_uri}.json",
        }
        record = {
            "provider": "twilio",
            "id": sid,
            "received_at": now.isoformat(),
            "request": params,
            "status": resource["status"],
            "callbacks": [],
        }
        with self._lock:
            self._twilio_messages[sid] = resource
            self._twilio_records[sid] = record
            self._records.append(record)
            response_body = copy.deepcopy(resource)

        response = _Response.json(201, response_body, [("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)])
        if self.simulate_status_callbacks:
            steps: list[tuple[str, int | None]] = [("queued", None)] if service_sid else []
            steps.append(("sent", None))
            if to.endswith(FAILING_NUMBER_SUFFIX):
                steps.append(("undelivered", UNDELIVERED_ERROR_CODE))
            else:
                steps.append(("delivered", None))
            callback_url = _first(params, "StatusCallback") or None
            # Runs after the 201 is on the wire, so callbacks never overtake the create response.
            response.after = functools.partial(self._spawn_delivery, sid, steps, callback_url, str(segments))
        return response

    def _spawn_delivery(self, sid, steps, callback_url, segments) -> None:
        thread = threading.Thread(
            target=self._deliver, args=(sid, steps, callback_url, segments), name=f"delivery-{sid}", daemon=True
        )
        with self._lock:
            self._delivery_threads = [t for t in self._delivery_threads if t.is_alive()]
            self._delivery_threads.append(thread)
        thread.start()

    def _deliver(self, sid: str, steps, callback_url: str | None, segments: str) -> None:
        for status, error_code in steps:
            if self._stopping.is_set():
                return
            params = self._advance(sid, status, error_code, segments)
            if params is None:  # cleared meanwhile
                return
            if callback_url:
                outcome = self._post_callback(callback_url, params)
                with self._lock:
                    record = self._twilio_records.get(sid)
                    if record is not None:
                        record["callbacks"].append({"status": status, **outcome})

    def _advance(self, sid: str, status: str, error_code: int | None, segments: str) -> list[tuple[str, str]] | None:
        now = _utcnow()
        with self._lock:
            resource = self._twilio_messages.get(sid)
            record = self._twilio_records.get(sid)
            if resource is None or record is None:
                return None
            if resource["from"] is None:  # a Messaging Service picks its sender when it queues
                channel, _ = _split_channel(resource["to"])
                resource["from"] = SERVICE_SENDER if channel == "sms" else f"{channel}:{SERVICE_SENDER}"
                resource["num_segments"] = segments
            resource["status"] = status
            resource["date_updated"] = _rfc2822(now)
            if status == "sent":
                resource["date_sent"] = _rfc2822(now)
            if error_code is not None:
                resource["error_code"] = error_code
                resource["error_message"] = UNDELIVERED_ERROR_MESSAGE
            record["status"] = status
            params = [
                ("MessageSid", sid),
                ("SmsSid", sid),
                ("MessageStatus", status),
                ("SmsStatus", status),
                ("AccountSid", resource["account_sid"]),
                ("From", resource["from"]),
                ("To", resource["to"]),
                ("ApiVersion", TWILIO_API_VERSION),
            ]
            if resource["messaging_service_sid"]:
                params.append(("MessagingServiceSid", resource["messaging_service_sid"]))
            if error_code is not None:
                params.append(("ErrorCode", str(error_code)))
            return params

    def _post_callback(self, url: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        body = urlencode(params).encode("utf-8")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": twilio_signature(url, params, self.twilio_auth_token),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        return post_callback(url, body, headers)

    # -- SendGrid ------------------------------------------------------------------------------

    def _route_sendgrid(self, method: str, path: str, headers, body: bytes) -> _Response:
        authorization = (headers.get("Authorization") or "").strip()
        if not authorization:
            return _sendgrid_errors(401, [_sendgrid_error(None, "authorization required")])
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode("utf-8", "surrogateescape"), self.sendgrid_api_key.encode("utf-8")
        ):
            return _sendgrid_errors(
                401, [_sendgrid_error(None, "The provided authorization grant is invalid, expired, or revoked")]
            )
        if path != "/v3/mail/send":
            return _sendgrid_errors(404, [_sendgrid_error(None, "not found")])
        if method != "POST":
            return _sendgrid_errors(405, [_sendgrid_error(None, "method not allowed")], [("Allow", "POST")])
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _sendgrid_errors(400, [_sendgrid_error(None, "Bad Request")])
        if not isinstance(payload, dict):
            return _sendgrid_errors(400, [_sendgrid_error(None, "Bad Request")])
        errors = _validate_mail(payload)
        if errors:
            return _sendgrid_errors(400, errors)

        message_id = secrets.token_urlsafe(16)[:22]
        mail_settings = payload.get("mail_settings")
        sandbox_mode = isinstance(mail_settings, dict) and isinstance(mail_settings.get("sandbox_mode"), dict)
        sandbox_mode = sandbox_mode and mail_settings["sandbox_mode"].get("enable") is True
        record = {
            "provider": "sendgrid",
            "id": message_id,
            "received_at": _utcnow().isoformat(),
            "request": payload,
            "status": "not_queued_sandbox_mode" if sandbox_mode else "accepted",
            "callbacks": [],
        }
        with self._lock:
            self._records.append(record)
        return _Response(200 if sandbox_mode else 202, b"", [("X-Message-Id", message_id)])


def _validate_mail(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Mail Send body checks, reporting every problem with the field that caused it."""
    errors: list[dict[str, Any]] = []

    def fail(field_name: str | None, message: str) -> None:
        errors.append(_sendgrid_error(field_name, message))

    template_id = payload.get("template_id")
    if template_id is not None and not (isinstance(template_id, str) and template_id):
        fail("template_id", "The template_id must be a non-empty string.")
    has_template = isinstance(template_id, str) and bool(template_id)

    personalizations = payload.get("personalizations")
    every_personalization_has_subject = False
    if not isinstance(personalizations, list) or not personalizations:
        fail("personalizations", "The personalizations field is required and must hold at least one personalization.")
    else:
        every_personalization_has_subject = True
        if len(personalizations) > SENDGRID_MAX_PERSONALIZATIONS:
            fail("personalizations", f"At most {SENDGRID_MAX_PERSONALIZATIONS} personalizations are allowed.")
        recipients = 0
        for i, personalization in enumerate(personalizations):
            if not isinstance(personalization, dict):
                fail(f"personalizations.{i}", "Each personalization must be an object.")
                every_personalization_has_subject = False
                continue
            to = personalization.get("to")
            if not isinstance(to, list) or not to:
                fail(
                    f"personalizations.{i}.to",
                    "Every personalization needs a to array with at least one email object holding a valid address.",
                )
            seen: set[str] = set()
            duplicate = False
            for kind in ("to", "cc", "bcc"):
                addresses = personalization.get(kind)
                if addresses is None or (kind == "to" and not isinstance(addresses, list)):
                    continue
                if not isinstance(addresses, list):
                    fail(f"personalizations.{i}.{kind}", f"The {kind} field must be an array of email objects.")
                    continue
                for j, address in enumerate(addresses):
                    email = address.get("email") if isinstance(address, dict) else None
                    if not _valid_email(email):
                        fail(f"personalizations.{i}.{kind}.{j}.email", "Does not contain a valid address.")
                        continue
                    recipients += 1
                    if email.lower() in seen:
                        duplicate = True
                    seen.add(email.lower())
            if duplicate:
                fail(
                    f"personalizations.{i}",
                    "Each email address in a personalization must be unique across to, cc and bcc.",
                )
            subject = personalization.get("subject")
            if subject is not None and not isinstance(subject, str):
                fail(f"personalizations.{i}.subject", "The subject must be a string.")
            if not (isinstance(subject, str) and subject):
                every_personalization_has_subject = False
        if recipients > SENDGRID_MAX_RECIPIENTS:
            fail("personalizations", f"At most {SENDGRID_MAX_RECIPIENTS} recipients (to + cc + bcc) are allowed.")

    sender = payload.get("from")
    sender_email = sender.get("email") if isinstance(sender, dict) else None
    if sender_email is None or sender_email == "":
        fail("from.email", "The from object is required for every send and must contain an email address.")
    elif not _valid_email(sender_email):
        fail("from.email", "The from email does not contain a valid address.")

    reply_to = payload.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _valid_email(reply_to.get("email"))):
        fail("reply_to.email", "The reply_to email does not contain a valid address.")

    subject = payload.get("subject")
    if subject is not None and not isinstance(subject, str):
        fail("subject", "The subject must be a string.")
    elif not (isinstance(subject, str) and subject) and not has_template and not every_personalization_has_subject:
        fail("subject", "The subject is required unless a template is used or every personalization has a subject.")

    content = payload.get("content")
    if content is None or (isinstance(content, list) and not content):
        if not has_template:
            fail("content", "Unless a valid template_id is provided, at least one content block is required.")
    elif not isinstance(content, list):
        fail("content", "The content field must be an array of content objects.")
    else:
        types: list[str] = []
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                fail(f"content.{i}", "Each content block must be an object with type and value.")
                continue
            content_type = block.get("type")
            if not isinstance(content_type, str) or not content_type:
                fail(f"content.{i}.type", "The content type must be a non-empty string such as text/plain.")
            else:
                types.append(content_type.lower())
            value = block.get("value")
            if not isinstance(value, str) or not value:
                fail(f"content.{i}.value", "The content value must be a string at least one character in length.")
        if types.count("text/plain") > 1 or types.count("text/html") > 1:
            fail("content", "text/plain and text/html may each appear only once.")
        expected_order = [t for t in ("text/plain", "text/html") if t in types]
        if types[: len(expected_order)] != expected_order:
            fail("content", "text/plain must come first, then text/html, then any other content type.")

    attachments = payload.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            fail("attachments", "The attachments field must be an array.")
        else:
            for i, attachment in enumerate(attachments):
                if not isinstance(attachment, dict):
                    fail(f"attachments.{i}", "Each attachment must be an object.")
                    continue
                data = attachment.get("content")
                if not isinstance(data, str) or not data:
                    fail(f"attachments.{i}.content", "The attachment content is required.")
                else:
                    try:
                        base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError):
                        fail(f"attachments.{i}.content", "The attachment content must be base64 encoded.")
                filename = attachment.get("filename")
                if not isinstance(filename, str) or not filename:
                    fail(f"attachments.{i}.filename", "The attachment filename is required.")
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Twilio/SendGrid provider sandbox in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--twilio-account-sid", default="AC" + "0" * 32)
    parser.add_argument("--twilio-auth-token", default="sandbox-auth-token")
    parser.add_argument("--sendgrid-api-key", default="SG.sandbox-key")
    parser.add_argument("--no-callbacks", action="store_true", help="do not simulate delivery or status callbacks")
    args = parser.parse_args(argv)
    sandbox = ProviderSandbox(
        args.host,
        args.port,
        twilio_account_sid=args.twilio_account_sid,
        twilio_auth_token=args.twilio_auth_token,
        sendgrid_api_key=args.sendgrid_api_key,
        simulate_status_callbacks=not args.no_callbacks,
    ).start()
    print(f"provider sandbox listening on {sandbox.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
