"""Request and response shapes of the webhook endpoint API (`/v1/webhooks`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.events import WebhookEndpoint, iso_utc


class WebhookEndpointCreate(BaseModel):
    """`POST /v1/webhooks`. Meaningful checks (URL scheme, known event types, secret format) are
    made by chalicelib.services.webhooks.register, which answers 400 with a clear message."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=50)
    secret: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)


def endpoint_view(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it; the signing secret only in the answer that created it."""
    view: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "created_at": iso_utc(endpoint.created_at),
        "delivery": {
            "last_success_at": iso_utc(endpoint.last_success_at) if endpoint.last_success_at else None,
            "last_failure_at": iso_utc(endpoint.last_failure_at) if endpoint.last_failure_at else None,
            "last_error": endpoint.last_error,
            "consecutive_failures": endpoint.consecutive_failures,
        },
    }
    if secret is not None:
        view["secret"] = secret
    return view
