"""What every channel module works with: the raw webhook request and the errors it may raise.

Channel modules never see Chalice: app.py turns the current request into a WebhookRequest, so
each provider's verification and parsing is plain code over bytes, testable on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


class WebhookRejected(Exception):
    """The request failed its authenticity check: answer 403 and store nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedPayload(ValueError):
    """The request is authentic but its content cannot be used: answer 400 saying why."""


def refuse_json_constant(name: str) -> Any:
    """For `json.loads(parse_constant=...)`: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a JSON number")


def json_object_body(body: bytes, *, empty: str, not_object: str) -> dict[str, Any]:
    """A webhook's UTF-8 JSON object body; MalformedPayload (`empty` / `not_object` say what the
    provider sends) for anything else, including NaN, over-long integers and deep nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("the body is not valid UTF-8") from None
    if not text.strip():
        raise MalformedPayload(empty)
    try:
        payload = json.loads(text, parse_constant=refuse_json_constant)
    except (ValueError, RecursionError):
        raise MalformedPayload("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedPayload(not_object)
    return payload


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


@dataclass(frozen=True)
class Outgoing:
    """One message for a channel's send, with everything the outbound service decided.

    `recipient` is the customer's address on the channel: an E.164 number for SMS and WhatsApp
    (`whatsapp:+...` through Twilio), an email address, or the chat app's user id. Channel modules
    turn it into the provider's request and answer a `SentMessage`, or raise `ProviderRejected`
    (stored as failed) / `ProviderUnavailable` (nothing was sent).
    """

    channel: str
    recipient: str
    body: str
    hub_message_id: str
    media_urls: tuple[str, ...] = ()
    timeout: float = 10.0
    # The business address to send from: the one the customer last wrote to on this channel.
    # None: the channel's configured sender (or Twilio Messaging Service).
    sender: str | None = None
    # Email: the recipient's display name, the subject, threading and extra headers (List-Unsubscribe).
    recipient_name: str | None = None
    subject: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    # Messenger/Instagram outside the 24-hour window: the message tag that allows it (HUMAN_AGENT).
    message_tag: str | None = None
    # LINE: a fresh reply token (free, single use); None means push.
    reply_token: str | None = None
    # The same for every retry of one client request (from its Idempotency-Key), so a provider
    # that deduplicates retries (LINE's X-Line-Retry-Key) delivers a retried send once.
    retry_key: str | None = None
    # A pre-approved template outside a messaging window: Meta's template name (with
    # `template_language` and `template_parameters` in order) or Twilio's Content SID (with
    # `template_variables`).
    template: str | None = None
    template_language: str | None = None
    template_parameters: tuple[str, ...] = ()
    template_variables: Mapping[str, str] = field(default_factory=dict)
    # Answers to offer as the channel's own buttons ((id, label)); the body already says them in words.
    choices: tuple[tuple[str, str], ...] = ()
