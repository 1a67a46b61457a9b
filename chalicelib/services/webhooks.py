"""Register, list and delete the CRM's webhook endpoints.

Each endpoint has its own signing secret (Standard Webhooks: `whsec_` + base64 of 24 to 64
random bytes), shown once when the endpoint is created. The URL, secret and event checks are
shared with bot integrations (services/endpoint_validation.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from chalicelib.domain.events import WebhookEndpoint
from chalicelib.domain.ids import new_id
from chalicelib.services.endpoint_validation import generate_secret, validate_events, validate_secret, validate_url
from chalicelib.services.errors import InvalidRequest, NotFound
from chalicelib.store import webhooks as store

MAX_ENDPOINTS = 50
_ENDPOINT_ID = re.compile(r"^wh_[0-9A-HJKMNP-TV-Z]{26}$")  # what register makes (new_id("wh"))


def register(
    url: str, events: list[str], secret: str | None = None, description: str | None = None
) -> tuple[WebhookEndpoint, str]:
    """Store a new endpoint; returns it and its signing secret (the given one, else a new one)."""
    checked_url = validate_url(url)
    checked_events = validate_events(events)
    if secret is None:
        secret = generate_secret()
    else:
        validate_secret(secret)
    if len(store.list_endpoints()) >= MAX_ENDPOINTS:
        raise InvalidRequest(f"at most {MAX_ENDPOINTS} webhook endpoints; delete one first")
    endpoint = WebhookEndpoint(
        id=new_id("wh"),
        url=checked_url,
        events=checked_events,
        secret=secret,
        description=description or None,
        created_at=datetime.now(UTC),
    )
    store.put_endpoint(endpoint)
    return endpoint, secret


def list_endpoints() -> list[WebhookEndpoint]:
    return store.list_endpoints()


def get_endpoint(endpoint_id: str) -> WebhookEndpoint:
    endpoint = store.get_endpoint(endpoint_id) if _ENDPOINT_ID.match(endpoint_id) else None
    if endpoint is None:
        raise NotFound(f"no webhook endpoint '{endpoint_id[:64]}'")
    return endpoint


def delete(endpoint_id: str) -> None:
    if not (_ENDPOINT_ID.match(endpoint_id) and store.delete_endpoint(endpoint_id)):
        raise NotFound(f"no webhook endpoint '{endpoint_id[:64]}'")
