"""A provider's short-lived API token, as the channel that uses it and the store that shares it see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)  # a credential: never in a repr, a log line or an exception
    expires_at: int  # epoch seconds

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now


class TokenCache(Protocol):
    """Where a channel keeps a token every Lambda instance shares (store/access_tokens.py)."""

    def get(self, provider: str, account: str) -> AccessToken | None: ...

    def put(
        self, provider: str, account: str, token: str, expires_at: int, now: float, replacing: str | None = None
    ) -> bool: ...
