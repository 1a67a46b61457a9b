"""The dashboard's sign-in: a cookie holding a signed, expiring token (standard library only, so
the edge middleware can check it without importing anything else).

The token is `v1.<expiry unix seconds>.<nonce>.<signature>`, the signature being the base64url
HMAC-SHA256 of `omnihub-dashboard.v1.<expiry>.<nonce>` keyed with the hub's API key: a token
proves its holder knew the key, and rotating the key ends every session. Comparisons are
constant time (hmac.compare_digest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from http.cookies import CookieError, SimpleCookie

COOKIE_NAME = "omnihub_dashboard"
VERSION = "v1"
_TOKEN = re.compile(r"^v1\.(\d{1,12})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$")
MAX_COOKIE_HEADER = 8192


def _signature(key: str, expiry: int, nonce: str) -> str:
    message = f"omnihub-dashboard.{VERSION}.{expiry}.{nonce}".encode()
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign(key: str, lifetime_seconds: float, now: float | None = None) -> str:
    """A token valid for `lifetime_seconds` from `now` (default: the clock)."""
    if not key:
        raise ValueError("no API key to sign the dashboard session with")
    expiry = int((time.time() if now is None else now) + lifetime_seconds)
    nonce = secrets.token_urlsafe(16)
    return f"{VERSION}.{expiry}.{nonce}.{_signature(key, expiry, nonce)}"


def expiry_of(token: str) -> int | None:
    match = _TOKEN.match(token or "")
    return int(match.group(1)) if match else None


def verify(key: str, token: str | None, now: float | None = None) -> bool:
    """Whether the token was signed with this key and has not expired."""
    if not key or not token:
        return False
    match = _TOKEN.match(token)
    if not match:
        return False
    expiry, nonce, presented = int(match.group(1)), match.group(2), match.group(3)
    expected = _signature(key, expiry, nonce)
    if not hmac.compare_digest(presented.encode("ascii"), expected.encode("ascii")):
        return False
    return (time.time() if now is None else now) < expiry


def key_matches(presented: str | None, key: str) -> bool:
    """The API key a person typed, compared in constant time."""
    if not key or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), key.encode("utf-8"))


def token_from_cookies(header: str | None) -> str | None:
    """The session token in a Cookie header, if any; a malformed header counts as none."""
    if not header or len(header) > MAX_COOKIE_HEADER:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except (CookieError, ValueError, TypeError):
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def set_cookie(token: str, max_age: int, secure: bool) -> str:
    flags = ["HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={max_age}"]
    if secure:
        flags.append("Secure")
    return "; ".join([f"{COOKIE_NAME}={token}", *flags])


def clear_cookie(secure: bool) -> str:
    flags = ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    if secure:
        flags.append("Secure")
    return "; ".join([f"{COOKIE_NAME}=", *flags])
