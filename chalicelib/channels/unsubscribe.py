"""One-click unsubscribe for email (RFC 2369 List-Unsubscribe, RFC 8058 one-click): signed tokens
and the headers and footer that carry them. Pure: the secret and URLs are passed in.

A token names a customer and a channel and is signed with HMAC-SHA256 under `UNSUBSCRIBE_SECRET`.
It never expires: an unsubscribe link in a years-old email must still work (and it can only ever
opt its own customer out). Rotating the secret invalidates every link already sent, so don't.

    u1.<base64url("<customer id>|<channel>")>.<base64url(HMAC-SHA256(secret, "omnihub-unsubscribe|u1|" + payload))>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

VERSION = "u1"
MAX_TOKEN_CHARS = 400
UNSUBSCRIBE_PATH = "/unsubscribe/email/"
ONE_CLICK = "List-Unsubscribe=One-Click"
_SAFE = re.compile(r"^[A-Za-z0-9_\-.]+$")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_CHANNEL = re.compile(r"^[a-z]{2,16}$")


class InvalidToken(ValueError):
    """The token was not made by this hub with this secret (or was altered)."""


@dataclass(frozen=True)
class UnsubscribeToken:
    customer_id: str
    channel: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"omnihub-unsubscribe|{VERSION}|{payload}".encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def make_token(customer_id: str, channel: str, secret: str) -> str:
    if not secret:
        raise ValueError("UNSUBSCRIBE_SECRET is not set: unsubscribe links cannot be signed")
    if not _CUSTOMER_ID.match(customer_id) or not _CHANNEL.match(channel):
        raise ValueError("a customer id and a channel name are needed to make an unsubscribe token")
    payload = _b64(f"{customer_id}|{channel}".encode("ascii"))
    return f"{VERSION}.{payload}.{_signature(payload, secret)}"


def read_token(token: str, secret: str) -> UnsubscribeToken:
    """The customer and channel a token names; InvalidToken unless this hub signed it."""
    if not secret:
        raise InvalidToken("UNSUBSCRIBE_SECRET is not set")
    if not token or len(token) > MAX_TOKEN_CHARS or not _SAFE.match(token):
        raise InvalidToken("not an unsubscribe token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InvalidToken("not an unsubscribe token")
    _, payload, signature = parts
    if not hmac.compare_digest(signature.encode("ascii"), _signature(payload, secret).encode("ascii")):
        raise InvalidToken("the token's signature does not match")
    try:
        customer_id, _, channel = _unb64(payload).decode("ascii").partition("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidToken("the token's content is unreadable") from None
    if not _CUSTOMER_ID.match(customer_id) or not _CHANNEL.match(channel):
        raise InvalidToken("the token's content is unreadable")
    return UnsubscribeToken(customer_id=customer_id, channel=channel)


def unsubscribe_url(public_base_url: str, token: str) -> str:
    """The https URL that unsubscribes (GET shows a confirmation page, POST unsubscribes at once)."""
    return public_base_url.rstrip("/") + UNSUBSCRIBE_PATH + token


def mailto_uri(address: str, token: str) -> str:
    """A mailto: alternative for clients without one-click support; the subject carries the token."""
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


def list_unsubscribe_headers(url: str, mailto: str | None = None) -> dict[str, str]:
    """RFC 2369 List-Unsubscribe (the https URL first, then the mailto:) and RFC 8058's
    List-Unsubscribe-Post, which says a POST to the URL unsubscribes with no further step.

    RFC 8058 also requires a valid DKIM signature covering both headers: SendGrid signs them
    once the sending domain is authenticated (Sender Authentication)."""
    targets = f"<{url}>" + (f", <{mailto}>" if mailto else "")
    return {"List-Unsubscribe": targets, "List-Unsubscribe-Post": ONE_CLICK}


def subject_token(subject: str | None) -> str | None:
    """The token of an email whose subject is `unsubscribe <token>` (what the mailto: writes)."""
    words = (subject or "").split()
    if len(words) == 2 and words[0].lower() == "unsubscribe":
        return words[1]
    return None


def email_footer(url: str, business_name: str) -> str:
    return f"\n\n--\nYou receive this email from {business_name}. To stop these emails, unsubscribe: {url}"
