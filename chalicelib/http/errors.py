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
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details or {}

    @property
    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, details: dict[str, Any] | None = None
) -> Response:
    return Response(
        body=json.dumps({"error": {"code": code, "message": message, **(details or {})}}),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


# The HTTP status of each kind of refusal (domain/replies.py RefusalKind).
REFUSAL_STATUS = {
    "invalid": 400,
    "not_found": 404,
    "in_progress": 409,
    "unprocessable": 422,
    "provider_refused": 502,
    "not_configured": 503,
}
REPLAYED = {"Idempotent-Replayed": "true"}
RETRY_AFTER = {"Retry-After": "5"}


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def unavailable(message: str, details: dict[str, Any] | None = None) -> ApiError:
    # Providers retry a 5xx; the retry finds what was stored and finishes the work.
    return ApiError(503, "temporarily_unavailable", message, dict(RETRY_AFTER), details)


def translated(exc: Exception) -> ApiError | None:
    """The API error a domain or channel exception stands for, if any (imported lazily so the
    cold start pays for these modules only when a request needs them)."""
    from chalicelib.api.reply_models import validation_problem
    from chalicelib.channels.base import MalformedPayload, WebhookRejected
    from chalicelib.domain.identity import InvalidIdentity
    from chalicelib.domain.replies import ProviderUnavailable, Refused
    from chalicelib.services.errors import Conflict, InvalidRequest, NotFound, Unavailable

    if isinstance(exc, Refused):
        status = REFUSAL_STATUS[exc.kind.value]
        headers = {**(RETRY_AFTER if status == 503 else {}), **(REPLAYED if exc.replayed else {})}
        return ApiError(status, exc.code, exc.message, headers, exc.details)
    if isinstance(exc, ProviderUnavailable):
        return unavailable(f"{exc.provider} could not be reached ({exc.reason}); nothing was sent; retry")
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
        return unavailable(str(exc), getattr(exc, "details", None))
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        return bad_request(validation_problem(exc))
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
