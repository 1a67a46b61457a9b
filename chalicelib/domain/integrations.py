"""Bot integrations: a bot platform, or the business's own bot, that can be put in control of a
conversation and is told about it through signed webhooks (Standard Webhooks, like CRM events).

Unlike a CRM webhook endpoint, an integration never receives the hub's event stream: it receives
only the events queued for it by name (services/events.py emit_to_integration), and of those
only the types it asked for (`events`; default `["message.created"]`, `["*"]` for all).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from chalicelib.domain.events import ALL_EVENTS
from chalicelib.domain.ids import is_id

ID_PREFIX = "int"
DEFAULT_EVENTS: tuple[str, ...] = ("message.created",)
MAX_NAME_LENGTH = 200


def is_integration_id(value: str) -> bool:
    """True for an id the hub could have given an integration (`int_<ulid>`)."""
    return isinstance(value, str) and is_id(value, ID_PREFIX)


class Integration(BaseModel):
    id: str
    name: str
    url: str
    events: list[str]
    secret: str = Field(repr=False)  # whsec_<base64>; never logged
    created_at: datetime
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0

    def subscribes(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events
