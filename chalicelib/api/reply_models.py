"""The body of `POST /v1/conversations/{id}/messages`: an agent's reply."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chalicelib.domain.replies import MAX_EMAIL_BODY_CHARS, MAX_MEDIA

MAX_URL_CHARS = 2048


class SenderRef(BaseModel):
    """Who sends: an agent, or a bot integration that controls the conversation."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["agent", "bot"]
    id: str = Field(min_length=1, max_length=200)


class ReplyRequest(BaseModel):
    """`channel` is checked by the domain (an unknown one is a 422 `unsupported_channel`), and so
    are the per-channel body limits; this model checks shapes only."""

    model_config = ConfigDict(extra="forbid")

    body: str | None = Field(default=None, max_length=MAX_EMAIL_BODY_CHARS)
    agent_id: str | None = Field(default=None, min_length=1, max_length=200)
    sender: SenderRef | None = None
    channel: str | None = Field(default=None, max_length=32)
    media_urls: list[str] = Field(default_factory=list, max_length=MAX_MEDIA)
    subject: str | None = Field(default=None, max_length=998)

    @field_validator("media_urls")
    @classmethod
    def _https_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            try:
                parts = urlsplit(url)
                _ = parts.port
            except ValueError:
                raise ValueError(f"'{url[:100]}' is not a URL") from None
            if (
                parts.scheme != "https"
                or not parts.hostname
                or len(url) > MAX_URL_CHARS
                or any(char.isspace() for char in url)
            ):
                raise ValueError(f"media URLs must be https URLs of at most {MAX_URL_CHARS} characters")
        return urls

    @model_validator(mode="after")
    def _one_sender(self) -> ReplyRequest:
        if self.sender is not None and self.sender.type == "agent":
            if self.agent_id is not None and self.agent_id != self.sender.id:
                raise ValueError("'agent_id' and 'sender.id' name different agents")
            self.agent_id = self.sender.id
        if self.agent_id is None and self.sender is None:
            raise ValueError("give 'agent_id' (or 'sender': {'type': 'agent' | 'bot', 'id': ...})")
        if self.agent_id is not None and self.sender is not None and self.sender.type == "bot":
            raise ValueError("a reply has one sender: 'agent_id' or a bot 'sender', not both")
        return self

    @property
    def bot_id(self) -> str | None:
        return self.sender.id if self.sender is not None and self.sender.type == "bot" else None

    @model_validator(mode="after")
    def _something_to_send(self) -> ReplyRequest:
        if not (self.body or "").strip() and not self.media_urls:
            raise ValueError("give a non-empty 'body' or at least one of 'media_urls'")
        return self

    @property
    def text(self) -> str:
        return self.body or ""

    def fingerprint_data(self) -> dict[str, Any]:
        """The request as an Idempotency-Key is bound to it (defaults filled in, so an omitted field
        and its default are the same request)."""
        return self.model_dump(mode="json")


def validation_problem(exc: ValidationError) -> str:
    """One readable sentence from a ValidationError."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
