"""WeChat Official Account API emulator, served by the provider sandbox under `/wechat/`.

Point the hub at it with `WECHAT_API_BASE_URL=<sandbox.url_for("wechat")>` and the emulator's
app id and secret as `WECHAT_APP_ID` / `WECHAT_APP_SECRET`.

Endpoints (WeChat answers HTTP 200 with `errcode`/`errmsg` for every refusal; so does this):

``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=``
    The classic token: every call issues a new token and invalidates the previous one from this
    endpoint. `{"access_token", "expires_in": 7200}`.
``POST /cgi-bin/stable_token`` JSON `{grant_type, appid, secret, force_refresh}`
    The stable token, isolated from the classic one. Normal mode hands out the current token while
    it has more than five minutes left, else issues a new one (the old one stays valid until it
    expires); `force_refresh: true` issues a new one and invalidates the old. `expires_in` is the
    time left. Only POST (43002 otherwise).
    Checks: body is a JSON object [47001]; grant_type is client_credential [40002]; appid given
    [41002] and known [40013]; secret given [41004] and right [40125].
``POST /cgi-bin/message/custom/send?access_token=``  (customer service message)
    Checks: access_token given [41001], issued here [40001], not expired [42001]; body not empty
    [44002] and a JSON object [47001]; touser an OpenID of this account [40003]; msgtype
    supported [40008] (text, image, voice, video, music, news, mpnews, msgmenu, miniprogrampage);
    for text, text.content non-empty [44004] and at most 2048 bytes of UTF-8 [45002]; touser not
    out of the 48-hour window [45015]. Success is `{"errcode": 0, "errmsg": "ok"}` and the send
    is recorded (`provider: "wechat"`) with the JSON body and the raw bytes received.

Knobs for tests: `expire_tokens()` makes every issued token expired (a send then gets 42001, and
the next stable token call issues a new one), `out_of_window` (OpenIDs answered 45015),
`known_openids` (when set, other OpenIDs are 40003), `fail_next(errcode, errmsg)` (the next send
answers that error), and the counters `token_requests` / `stable_token_requests`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from local.sandbox import ProviderSandbox

SANDBOX_APP_ID = "wx0123456789abcdef"
SANDBOX_APP_SECRET = "sandbox-wechat-app-secret"  # noqa: S105 - the sandbox's well-known local value
TOKEN_LIFETIME_SECONDS = 7200
STABLE_RENEWAL_SECONDS = 300  # normal mode renews a token in its last five minutes
MAX_TEXT_BYTES = 2048
SEND_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "music", "news", "mpnews", "msgmenu", "miniprogrampage", "mpnewsarticle"}
)
JSON_HEADERS = [("Content-Type", "application/json; encoding=utf-8")]


@dataclass
class _Token:
    value: str
    source: str  # "classic" or "stable"
    expires_at: float
    revoked: bool = False


def _error(errcode: int, errmsg: str) -> tuple[int, Any, Iterable[tuple[str, str]]]:
    # Real answers end errmsg with a request id: " rid: 6523b2a1-...".
    rid = f"{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}"
    return 200, {"errcode": errcode, "errmsg": f"{errmsg} rid: {rid}"}, JSON_HEADERS


class WeChatEmulator:
    prefix = "wechat"
    provider = "wechat"

    def __init__(
        self,
        app_id: str = SANDBOX_APP_ID,
        app_secret: str = SANDBOX_APP_SECRET,
        *,
        known_openids: Iterable[str] | None = None,
        out_of_window: Iterable[str] = (),
        clock: Any = time.time,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self._initial_openids = frozenset(known_openids) if known_openids is not None else None
        self._initial_out_of_window = frozenset(out_of_window)
        self._clock = clock
        self._lock = threading.Lock()
        self._sandbox: ProviderSandbox | None = None
        self.reset()

    # -- ChatEmulator ----------------------------------------------------------------------------

    def attach(self, sandbox: ProviderSandbox) -> None:
        self._sandbox = sandbox

    def handle(
        self, method: str, path: str, query: str, headers: Any, body: bytes
    ) -> tuple[int, Any, Iterable[tuple[str, str]]]:
        params = {key: values[0] for key, values in parse_qs(query, keep_blank_values=True).items()}
        if path == "/cgi-bin/token":
            if method != "GET":
                return _error(43001, "require GET method")
            return self._classic_token(params)
        if path == "/cgi-bin/stable_token":
            if method != "POST":
                return _error(43002, "require POST method")
            return self._stable_token(body)
        if path == "/cgi-bin/message/custom/send":
            if method != "POST":
                return _error(43002, "require POST method")
            return self._custom_send(params, body)
        return 404, {"errcode": 40066, "errmsg": f"invalid url: {path[:100]}"}, JSON_HEADERS

    # -- test knobs ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget tokens, sends, counters and injected failures; back to the constructor's settings."""
        with self._lock:
            self._tokens: dict[str, _Token] = {}
            self._stable: _Token | None = None
            self._classic: _Token | None = None
            self._failures: list[tuple[int, str]] = []
            self.token_requests = 0
            self.stable_token_requests = 0
            self.sends: list[dict[str, Any]] = []
            self.known_openids: set[str] | None = (
                set(self._initial_openids) if self._initial_openids is not None else None
            )
            self.out_of_window: set[str] = set(self._initial_out_of_window)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (as if two hours had passed)."""
        now = self._clock()
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, now - 1)

    def fail_next(self, errcode: int, errmsg: str) -> None:
        """The next customer service send answers this error (e.g. -1, "system error")."""
        with self._lock:
            self._failures.append((errcode, errmsg))

    @property
    def token_fetches(self) -> int:
        return self.token_requests + self.stable_token_requests

    # -- endpoints -------------------------------------------------------------------------------

    def _credentials_error(self, grant_type: Any, appid: Any, secret: Any):
        if grant_type != "client_credential":
            return _error(40002, "invalid grant_type")
        if not appid:
            return _error(41002, "appid missing")
        if appid != self.app_id:
            return _error(40013, "invalid appid")
        if not secret:
            return _error(41004, "appsecret missing")
        if not secrets.compare_digest(str(secret).encode(), self.app_secret.encode()):
            return _error(40125, "invalid appsecret")
        return None

    def _issue(self, source: str, now: float) -> _Token:
        token = _Token(
            value=f"{secrets.randbelow(90) + 10}_{secrets.token_urlsafe(96)}",
            source=source,
            expires_at=now + TOKEN_LIFETIME_SECONDS,
        )
        self._tokens[token.value] = token
        return token

    def _classic_token(self, params: dict[str, str]):
        with self._lock:
            self.token_requests += 1
            refused = self._credentials_error(params.get("grant_type"), params.get("appid"), params.get("secret"))
            if refused:
                return refused
            now = self._clock()
            if self._classic is not None:
                self._classic.revoked = True  # the classic API invalidates the previous token
            self._classic = self._issue("classic", now)
            return 200, {"access_token": self._classic.value, "expires_in": TOKEN_LIFETIME_SECONDS}, JSON_HEADERS

    def _stable_token(self, body: bytes):
        try:
            payload = json.loads(body) if body else None
        except (ValueError, RecursionError):
            payload = None
        with self._lock:
            self.stable_token_requests += 1
            if not isinstance(payload, dict):
                return _error(47001, "data format error")
            refused = self._credentials_error(payload.get("grant_type"), payload.get("appid"), payload.get("secret"))
            if refused:
                return refused
            now = self._clock()
            current = self._stable
            force = payload.get("force_refresh") is True
            if force and current is not None:
                current.revoked = True
            if force or current is None or current.revoked or current.expires_at - now <= STABLE_RENEWAL_SECONDS:
                current = self._stable = self._issue("stable", now)
            expires_in = int(current.expires_at - now)
            return 200, {"access_token": current.value, "expires_in": expires_in}, JSON_HEADERS

    def _custom_send(self, params: dict[str, str], body: bytes):
        token_value = params.get("access_token", "")
        with self._lock:
            if not token_value:
                return _error(41001, "access_token missing")
            token = self._tokens.get(token_value)
            if token is None or token.revoked:
                return _error(40001, "invalid credential, access_token is invalid or not latest")
            if token.expires_at <= self._clock():
                return _error(42001, "access_token expired")
            if not body.strip():
                return _error(44002, "empty post data")
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError, UnicodeDecodeError):
                payload = None
            if not isinstance(payload, dict):
                return _error(47001, "data format error")
            touser = payload.get("touser")
            if (
                not isinstance(touser, str)
                or not touser
                or (self.known_openids is not None and touser not in self.known_openids)
            ):
                return _error(40003, "invalid openid")
            msgtype = payload.get("msgtype")
            if msgtype not in SEND_MSGTYPES:
                return _error(40008, "invalid message type")
            if msgtype == "text":
                text = payload.get("text")
                content = text.get("content") if isinstance(text, dict) else None
                if not isinstance(content, str) or not content:
                    return _error(44004, "empty content")
                if len(content.encode("utf-8")) > MAX_TEXT_BYTES:
                    return _error(45002, "content size out of limit")
            if touser in self.out_of_window:
                return _error(45015, "response out of time limit or subscription is canceled")
            if self._failures:
                return _error(*self._failures.pop(0))
            record = {
                "provider": self.provider,
                "id": f"wechat-{uuid.uuid4().hex[:16]}",  # the sandbox's own id: WeChat returns none
                "received_at": datetime.now(UTC).isoformat(),
                "request": payload,
                "raw_body": body.decode("utf-8", errors="replace"),
                "status": "sent",
                "callbacks": [],
            }
            self.sends.append(record)
        if self._sandbox is not None:
            self._sandbox.record(record)
        return 200, {"errcode": 0, "errmsg": "ok"}, JSON_HEADERS
