"""Checks shared by everything the hub delivers Standard Webhooks to: the CRM's webhook endpoints
(services/webhooks.py) and bot integrations (services/integrations.py).

A signing secret is Standard Webhooks' `whsec_` + base64 of 24 to 64 random bytes; a URL is an
absolute http(s) URL (https unless loopback or ALLOW_INSECURE_WEBHOOK_URLS=true); an event list
names known event types, or is `["*"]`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from urllib.parse import urlsplit

from chalicelib.config import settings
from chalicelib.domain.events import ALL_EVENTS, EVENT_TYPES
from chalicelib.services.errors import InvalidRequest

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
GENERATED_SECRET_BYTES = 32
MAX_URL_LENGTH = 2048


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode("ascii")


def validate_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret of 24 to 64 bytes, else InvalidRequest."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidRequest(f"'secret' must start with '{SECRET_PREFIX}' followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'secret' must be '{SECRET_PREFIX}' followed by valid (padded) base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidRequest(
            f"'secret' must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes (it encodes {len(key)})"
        )
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host; https unless the host is loopback or
    ALLOW_INSECURE_WEBHOOK_URLS=true. No credentials or fragment (the signature authenticates)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("'url' is required")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"'url' must be at most {MAX_URL_LENGTH} characters")
    if any(char.isspace() or ord(char) < 32 for char in url):
        raise InvalidRequest("'url' must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidRequest("'url' is not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise InvalidRequest("'url' must be an http or https URL")
    if not host:
        raise InvalidRequest("'url' must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("'url' must not contain credentials; verify the webhook signature instead")
    if parts.fragment:
        raise InvalidRequest("'url' must not contain a fragment")
    if parts.scheme.lower() == "http" and not (_is_loopback(host) or settings().allow_insecure_webhook_urls):
        raise InvalidRequest("'url' must use https (http is accepted only for loopback hosts)")
    return url


def validate_events(events: list[str]) -> list[str]:
    """A non-empty list of known event types (duplicates removed, order kept), or ["*"]."""
    if not isinstance(events, list) or not events:
        raise InvalidRequest(f"'events' must be a non-empty list of event types, or [\"{ALL_EVENTS}\"]")
    if ALL_EVENTS in events:
        if any(event != ALL_EVENTS for event in events):
            raise InvalidRequest(f"'events': \"{ALL_EVENTS}\" already means every event type; give it alone")
        return [ALL_EVENTS]
    unknown = [event for event in events if event not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"'events': unknown event type {', '.join(map(repr, unknown))}; known: {', '.join(EVENT_TYPES)}"
        )
    return list(dict.fromkeys(events))
