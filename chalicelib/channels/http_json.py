"""One JSON request to a chat app's HTTP API (Meta Graph, Telegram, LINE, WeChat).

What the four senders share: the standard library only (no SDK to load on a cold start), a
bounded read of the answer, error answers returned rather than raised so each module can read its
provider's error shape, and network failures as `ProviderUnavailable` naming only the exception
type (a URL may hold a token). Proxy variables are honoured for the provider's own API only: a
configured sandbox or test server is always called directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chalicelib.domain.replies import ProviderUnavailable


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # at most the `max_bytes` asked for

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return None


def post_json(
    provider: str,
    url: str,
    payload: Any,
    *,
    timeout: float,
    api_base_url: str,
    base_url_setting: str,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    failure_prefix: str = "",
) -> HttpAnswer:
    """POST `payload` as compact UTF-8 JSON (non-ASCII kept: WeChat shows `\\uXXXX` escapes as
    they are). `api_base_url` is the provider's real API, the only one reached through a proxy."""
    import http.client
    import urllib.error
    import urllib.request

    if urlsplit(url).scheme not in ("http", "https"):
        raise ProviderUnavailable(provider, f"{base_url_setting} is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", **(headers or {})},
    )
    handlers = [] if url.startswith(api_base_url.rstrip("/") + "/") else [urllib.request.ProxyHandler({})]
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.headers, response.read(max_bytes))
    except urllib.error.HTTPError as error:
        try:
            body = error.read(max_bytes)
        except (OSError, http.client.HTTPException):
            body = b""
        finally:
            error.close()
        return HttpAnswer(error.code, error.headers or {}, body)
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeouts, resets
        raise ProviderUnavailable(provider, failure_prefix + type(exc).__name__) from None
