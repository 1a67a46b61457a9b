"""Register, list, read and delete bot integrations.

An integration is a bot (a bot platform, or the business's own) that can control conversations.
It gets its own signing secret (Standard Webhooks `whsec_`, the given one or a generated one,
shown once at creation), and receives only the events queued for it by name
(chalicelib.services.events.emit_to_integration) whose type it asked for. URL, secret and event
checks are the CRM webhook endpoints' (services/endpoint_validation.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.domain.ids import new_id
from chalicelib.domain.integrations import DEFAULT_EVENTS, ID_PREFIX, MAX_NAME_LENGTH, Integration, is_integration_id
from chalicelib.services.endpoint_validation import generate_secret, validate_events, validate_secret, validate_url
from chalicelib.services.errors import InvalidRequest, NotFound
from chalicelib.store import integrations as store

MAX_INTEGRATIONS = 50


def register(
    name: str, url: str, events: list[str] | None = None, secret: str | None = None
) -> tuple[Integration, str]:
    """Store a new integration; returns it and its signing secret (the given one, else a new one).
    `events` defaults to ["message.created"]."""
    checked_name = validate_name(name)
    checked_url = validate_url(url)
    checked_events = validate_events(list(DEFAULT_EVENTS) if events is None else events)
    if secret is None:
        secret = generate_secret()
    else:
        validate_secret(secret)
    if len(store.list_integrations()) >= MAX_INTEGRATIONS:
        raise InvalidRequest(f"at most {MAX_INTEGRATIONS} integrations; delete one first")
    integration = Integration(
        id=new_id(ID_PREFIX),
        name=checked_name,
        url=checked_url,
        events=checked_events,
        secret=secret,
        created_at=datetime.now(UTC),
    )
    store.put_integration(integration)
    return integration, secret


def list_integrations() -> list[Integration]:
    """Every integration, oldest first (one Query)."""
    return store.list_integrations()


def find_integration(integration_id: str) -> Integration | None:
    """The integration, or None if there is none by that id (one GetItem; none for an id the hub
    never makes)."""
    return store.get_integration(integration_id) if is_integration_id(integration_id) else None


def get_integration(integration_id: str) -> Integration:
    """The integration, else NotFound (404 at the edge)."""
    integration = find_integration(integration_id)
    if integration is None:
        raise NotFound(f"no integration '{str(integration_id)[:64]}'")
    return integration


def delete(integration_id: str) -> None:
    """Delete it (NotFound if there is none); deliveries still queued for it are dropped."""
    if not (is_integration_id(integration_id) and store.delete_integration(integration_id)):
        raise NotFound(f"no integration '{str(integration_id)[:64]}'")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("'name' is required")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"'name' must be at most {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 32 for char in name):
        raise InvalidRequest("'name' must not contain control characters")
    return name
