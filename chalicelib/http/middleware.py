"""What every HTTP request passes through: size limit, API authentication, the error envelope,
and one structured access-log line."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib import metrics
from chalicelib.http.errors import ApiError, error_response
from chalicelib.observability import logger

_CHALICE_CODES = {
    "MethodNotAllowedError": "method_not_allowed",
    "UnsupportedMediaType": "unsupported_media_type",
    "BadRequestError": "invalid_request",
    "BadRequest": "invalid_request",
    "NotFoundError": "not_found",
    "UnauthorizedError": "unauthorized",
    "ForbiddenError": "forbidden",
    "ConflictError": "conflict",
    "RequestTimeoutError": "request_timeout",
    "TooManyRequestsError": "too_many_requests",
    "InternalServerError": "internal_error",
}
API_PREFIX = "/v1/"
DASHBOARD_READS = "/v1/analytics/"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().removesuffix("_error") or "error"


def _envelope_chalice_error(response: Response) -> Response:
    """Chalice answers routing and parsing errors as {"Code", "Message"}; give them the hub's shape."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response
    code = _CHALICE_CODES.get(body["Code"]) or _snake(str(body["Code"]))
    message = str(body.get("Message", ""))
    if response.status_code >= 500:
        message = "the hub hit an unexpected error; it has been logged"
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return error_response(response.status_code, code, message, headers)


def _authenticated(request: Any) -> bool:
    from chalicelib.config import secret

    expected = secret("hub_api_key")
    if not expected:
        logger.error("HUB_API_KEY is not configured; every API request is refused")
        return False
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and presented:
        return hmac.compare_digest(presented.strip().encode(), expected.encode())
    return _dashboard_session(request, expected)


def _dashboard_session(request: Any, key: str) -> bool:
    """A signed-in dashboard (its session cookie) may read the analytics API, and only that:
    GET only, /v1/analytics/ only; with SameSite=Strict and no writes, no other site can use it."""
    if request.method != "GET" or not request.path.startswith(DASHBOARD_READS):
        return False
    from chalicelib.dashboard import session

    return session.verify(key, session.token_from_cookies(request.headers.get("cookie")))


def _body_size(request: Any) -> int:
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        return int(declared)
    body = request.raw_body
    return len(body) if body else 0


def _dispatch(request: Any, get_response: Callable[[Any], Response]) -> Response:
    from chalicelib.config import settings

    limit = settings().max_body_bytes
    if _body_size(request) > limit:
        return error_response(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
    if request.path.startswith(API_PREFIX) and not _authenticated(request):
        return error_response(
            401,
            "unauthorized",
            "send the hub's API key as 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": 'Bearer realm="omnihub"'},
        )
    try:
        return _envelope_chalice_error(get_response(request))
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)


def edge(request: Any, get_response: Callable[[Any], Response]) -> Response:
    started = time.perf_counter()
    response = _dispatch(request, get_response)
    log = logger.error if response.status_code >= 500 else logger.info
    log(
        "request",
        extra={
            "method": request.method,
            "route": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    metrics.flush()  # EMF lines for what this request measured (stdout; never raises)
    return response
