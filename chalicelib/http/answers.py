"""HTTP answers for the routes that send (replies, notifications, links): a use case's domain
result or error, shaped as the API answers it. Callable without Chalice, so the tests call them
as the routes do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.http.errors import REPLAYED, translated


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


def replayed_if(replayed: bool) -> dict[str, str]:
    return dict(REPLAYED) if replayed else {}


def answered(call: Callable[[], Answer]) -> Answer:
    """The call's answer, or the API error its exception stands for (anything else propagates)."""
    try:
        return call()
    except Exception as exc:
        error = translated(exc)
        if error is None:
            raise
        return Answer(error.status, error.body, error.headers)
