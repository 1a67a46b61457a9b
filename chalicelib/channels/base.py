"""What every channel module works with: the raw webhook request and the errors it may raise.

Channel modules never see Chalice: app.py turns the current request into a WebhookRequest, so
each provider's verification and parsing is plain code over bytes, testable on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode


class WebhookRejected(Exception):
    """The request failed its authenticity check: answer 403 and store nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedPayload(ValueError):
    """The request is authentic but its content cannot be used: answer 400 saying why."""


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    query: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()

    def query_value(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)

    def public_url(self, base_url: str) -> str:
        """The URL the provider called, as it signed it: public base + path + query string."""
        url = base_url.rstrip("/") + self.path
        if self.query:
            url += "?" + urlencode(self.query)
        return url
