"""Every error the hub answers has one shape: `{"error": {"code": ..., "message": ...}}`.

Chalice turns any exception a view raises into a bare 500 before middleware can see it, except
ChaliceUnhandledError; so ApiError derives from it, and `guarded` turns the domain's own
exceptions into ApiErrors at the edge.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from chalice import Response
from chalice.app import ChaliceUnhandledError

from chalicelib.observability import logger


class ApiError(ChaliceUnhandledError):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def unavailable(message: str) -> ApiError:
    # Providers retry a 5xx; the retry finds what was stored and finishes the work.
    return ApiError(503, "temporarily_unavailable", message, {"Retry-After": "5"})


def validation_message(exc: Any) -> str:
    """One readable sentence from a pydantic ValidationError."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def translated(exc: Exception) -> ApiError | None:
    """The API error a domain or channel exception stands for, if any (imported lazily so the
    cold start pays for these modules only when a request needs them)."""
    from chalicelib.channels.base import MalformedPayload, WebhookRejected
    from chalicelib.domain.identity import InvalidIdentity
    from chalicelib.services.errors import Conflict, InvalidRequest, NotFound, Unavailable

    if isinstance(exc, WebhookRejected):
        logger.warning("webhook rejected", extra={"reason": exc.reason})
        return ApiError(403, "forbidden", "request authenticity could not be verified")
    if isinstance(exc, MalformedPayload | InvalidIdentity | InvalidRequest):
        return bad_request(str(exc))
    if isinstance(exc, NotFound):
        return not_found(str(exc))
    if isinstance(exc, Conflict):
        return conflict(str(exc))
    if isinstance(exc, Unavailable):
        return unavailable(str(exc))
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        return bad_request(validation_message(exc))
    return None


def guarded(view: Callable[..., Any]) -> Callable[..., Any]:
    """Translate the exceptions the domain and channels raise into API errors."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except ApiError:
            raise
        except Exception as exc:
            error = translated(exc)
            if error is None:
                raise
            raise error from None

    return wrapper
