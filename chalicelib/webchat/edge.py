"""The web chat's HTTP edge: what app.py's /webchat routes call.

These routes are public (no API key): the JSON API authenticates the visitor with the session
token as `Authorization: Bearer <token>`. Every answer, errors included, carries the CORS headers
for an allowed origin (`WEBCHAT_ALLOWED_ORIGINS`), so a page embedding the chat on another
origin can read them; preflights (OPTIONS) are answered here too. Tokens are never logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.observability import logger

MAX_JSON_BYTES = 16 * 1024  # a 4000-character message in JSON, with room to spare
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE = "600"
JSON_TYPE = "application/json"
NO_STORE = "no-store"


# --- Page and script ---------------------------------------------------------------------------


def page(request: Any) -> Response:
    from chalicelib.config import settings
    from chalicelib.webchat import page as page_asset

    asset = page_asset()
    origins = settings().allowed_origins
    ancestors = "*" if "*" in origins else " ".join(("'self'", *origins))
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(asset.script_hashes)}",
            f"style-src {' '.join(asset.style_hashes)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )
    return Response(
        body=asset.body,
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def embed_script(request: Any) -> Response:
    from chalicelib.webchat import embed_script as script_asset

    return Response(
        body=script_asset().body,
        status_code=200,
        headers={
            "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": "public, max-age=300",
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- JSON API ----------------------------------------------------------------------------------


def sessions(request: Any) -> Response:
    from chalicelib.services import webchat

    if request.method == "OPTIONS":
        return _preflight(request)

    def start() -> Response:
        return _json(201, webchat.start_session(_json_body(request, allow_empty=True)))

    return _answer(request, start)


def messages(request: Any, lambda_context: Any = None) -> Response:
    from chalicelib.services import webchat

    if request.method == "OPTIONS":
        return _preflight(request)

    def post() -> Response:
        body = webchat.post_message(_bearer(request), _json_body(request))
        return _json(posted_status(body), body)

    def poll() -> Response:
        from chalicelib.http.requests import query_value

        wait = _wait_seconds(query_value(request, "wait"))
        body = webchat.poll_messages(
            _bearer(request), query_value(request, "after"), wait, time_left=_time_left(lambda_context)
        )
        return _json(200, body)

    return _answer(request, post if request.method == "POST" else poll)


def _bearer(request: Any) -> str | None:
    from chalicelib.channels.webchat import bearer_token

    return bearer_token(request.headers.get("authorization"))


def _wait_seconds(raw: str | None) -> float:
    from chalicelib.services.errors import InvalidRequest

    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidRequest("'wait' must be a number of seconds from 0 to 25")
    return value


def _time_left(lambda_context: Any) -> float | None:
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        return float(remaining()) / 1000
    except (TypeError, ValueError):
        return None


def _json_body(request: Any, allow_empty: bool = False) -> dict[str, Any]:
    from chalicelib.http.errors import ApiError
    from chalicelib.http.requests import json_object, raw_body

    body = raw_body(request)
    if len(body) > MAX_JSON_BYTES:
        raise ApiError(413, "payload_too_large", f"a web chat request body holds at most {MAX_JSON_BYTES} bytes")
    if allow_empty and not body.strip():
        return {}
    return json_object(request)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers={"Content-Type": JSON_TYPE, "Cache-Control": NO_STORE, **(headers or {})},
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


def _answer(request: Any, action: Callable[[], Response]) -> Response:
    """Run the action; answer any refusal in the hub's error shape, with CORS headers either way."""
    from chalicelib.channels.webchat import IdentityRejected, SessionRejected
    from chalicelib.domain.links import LinkRefused
    from chalicelib.http.errors import ApiError, translated

    try:
        response = action()
    except SessionRejected as exc:
        logger.info("web chat session refused", extra={"reason": exc.reason})
        response = _error(
            401,
            "unauthorized",
            "the web chat session is missing, invalid or expired; start a new one with POST /webchat/sessions",
            {"WWW-Authenticate": 'Bearer realm="omnihub-webchat"'},
        )
    except IdentityRejected as exc:
        logger.info("web chat sign-in refused", extra={"reason": exc.reason})
        response = _error(401, "invalid_identity", f"the identity token was refused: {exc.reason}")
    except ApiError as exc:
        response = _error(exc.status, exc.code, exc.message, exc.headers)
    except LinkRefused as exc:
        response = _error(400, "link_refused", str(exc))
    except Exception as exc:
        error = translated(exc)
        if error is None:
            raise
        response = _error(error.status, error.code, error.message, error.headers)
    response.headers.update(cors_headers(request))
    return response


def origin_allowed(origin: str) -> bool:
    """Whether a page on `origin` may use the chat: WEBCHAT_ALLOWED_ORIGINS lists it, or '*'."""
    from chalicelib.config import settings

    allowed = settings().allowed_origins
    return "*" in allowed or origin.strip().rstrip("/") in allowed


def cors_headers(request: Any) -> dict[str, str]:
    from chalicelib.config import settings

    origin = (request.headers.get("origin") or "").strip()
    headers = {"Vary": "Origin"}
    if not origin or not origin_allowed(origin):
        return headers
    headers["Access-Control-Allow-Origin"] = "*" if "*" in settings().allowed_origins else origin
    headers["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"
    return headers


def posted_status(body: dict[str, Any]) -> int:
    """201 for a new message; 200 for a repeat of the same client_id (nothing new was stored)."""
    return 200 if body["duplicate"] else 201


def _preflight(request: Any) -> Response:
    headers = cors_headers(request)
    if "Access-Control-Allow-Origin" in headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            }
        )
    return Response(body="", status_code=204, headers=headers)
