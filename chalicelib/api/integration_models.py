"""Request and response shapes of the integration API (`/v1/integrations`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.events import iso_utc
from chalicelib.domain.integrations import MAX_NAME_LENGTH, Integration


class IntegrationCreate(BaseModel):
    """`POST /v1/integrations`. Meaningful checks (URL scheme, known event types, secret format)
    are made by chalicelib.services.integrations.register, which answers 400 with a clear message.
    `events` left out means ["message.created"]."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=50)
    secret: str | None = Field(default=None, max_length=200)


def integration_view(integration: Integration, secret: str | None = None) -> dict[str, Any]:
    """An integration as the API shows it; the signing secret only in the answer that created it."""
    view: dict[str, Any] = {
        "id": integration.id,
        "name": integration.name,
        "url": integration.url,
        "events": list(integration.events),
        "created_at": iso_utc(integration.created_at),
        "delivery": {
            "last_success_at": iso_utc(integration.last_success_at) if integration.last_success_at else None,
            "last_failure_at": iso_utc(integration.last_failure_at) if integration.last_failure_at else None,
            "last_error": integration.last_error,
            "consecutive_failures": integration.consecutive_failures,
        },
    }
    if secret is not None:
        view["secret"] = secret
    return view
