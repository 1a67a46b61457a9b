"""Reading Chalice requests at the edge."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.channels.base import WebhookRequest, refuse_json_constant
from chalicelib.http.errors import bad_request


def request_path(request: Any) -> str:
    """The path as the caller wrote it, without API Gateway's stage prefix."""
    path: str = request.path
    for name, value in (request.uri_params or {}).items():
        path = path.replace("{" + name + "}", value)
    return path


def raw_body(request: Any) -> bytes:
    body = request.raw_body
    if isinstance(body, str):
        return body.encode("utf-8")
    return body or b""


def webhook_request(request: Any) -> WebhookRequest:
    query: list[tuple[str, str]] = []
    params = request.query_params
    if params is not None:
        for key in params:
            query.extend((key, value) for value in params.getlist(key))
    return WebhookRequest(
        method=request.method,
        path=request_path(request),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=raw_body(request),
        query=query,
    )


def json_object(request: Any) -> dict[str, Any]:
    """The request's JSON body, which must be an object."""
    body = raw_body(request)
    if not body.strip():
        raise bad_request("request body is empty; send a JSON object")
    try:
        data = json.loads(body, parse_constant=refuse_json_constant)
    except RecursionError:
        raise bad_request("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    return data


def query_value(request: Any, name: str) -> str | None:
    params = request.query_params
    if params is None or name not in params:
        return None
    values = params.getlist(name)
    if len(values) > 1:
        raise bad_request(f"query parameter '{name}' given more than once")
    return values[0]
