"""The dashboard's HTTP edge: what app.py's /dashboard routes call.

`GET /dashboard` shows the sign-in form, or the dashboard once signed in. `POST /dashboard/login`
takes the API key from a form (never a URL), compares it in constant time and sets the session
cookie (HttpOnly, SameSite=Strict, Secure behind https, Path=/; a token signed with the key that
expires after DASHBOARD_SESSION_HOURS). With it the page's script reads `GET /v1/analytics/...`
(the edge middleware accepts the cookie there and nowhere else). Every page answers with a strict
Content-Security-Policy: nothing inline, scripts and styles only from the hub itself.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalice import Response

from chalicelib.dashboard import session
from chalicelib.observability import logger

POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
MAX_FORM_BYTES = 4096
ASSET_CACHE = "public, max-age=31536000, immutable"


def _secure() -> bool:
    from chalicelib.config import settings

    return settings().public_base_url.strip().lower().startswith("https://")


def _home() -> str:
    """Where /dashboard is, as the browser sees it (PUBLIC_BASE_URL may carry a stage path)."""
    from chalicelib.config import settings

    base = urlsplit(settings().public_base_url.strip()).path.rstrip("/")
    return f"{base}/dashboard"


def _key() -> str:
    from chalicelib.config import secret

    return secret("hub_api_key")


def signed_in(request: Any) -> bool:
    return session.verify(_key(), session.token_from_cookies(request.headers.get("cookie")))


def _page(name: str, status: int, headers: dict[str, str] | None = None, **values: str) -> Response:
    from chalicelib.dashboard import template

    body = template(name)
    values = {"home": _home(), "base": _home().removesuffix("/dashboard"), **values}
    for field, value in values.items():
        body = body.replace("{{" + field + "}}", html.escape(value, quote=True))
    return Response(body=body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def _form(status: int = 200, error: str = "", headers: dict[str, str] | None = None) -> Response:
    return _page("login.html", status, headers, error=error, error_hidden="" if error else "hidden")


def page(request: Any) -> Response:
    if not signed_in(request):
        return _form()
    return _page("dashboard.html", 200)


def login(request: Any) -> Response:
    from chalicelib.config import settings

    key = _key()
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_FORM_BYTES:
        return _form(413, "That is too long to be the API key.")
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    presented = (fields.get("api_key") or [""])[0]
    if not key:
        logger.error("HUB_API_KEY is not configured; the dashboard cannot sign anyone in")
        return _form(401, "The hub has no API key configured, so nobody can sign in.")
    if not session.key_matches(presented, key):
        logger.info("dashboard sign-in refused")
        return _form(401, "That API key is not right. Try again.")
    lifetime = max(60, int(settings().dashboard_session_hours * 3600))
    token = session.sign(key, lifetime)
    return Response(
        body="",
        status_code=303,
        headers={
            "Location": _home(),
            "Set-Cookie": session.set_cookie(token, lifetime, _secure()),
            "Cache-Control": "no-store",
        },
    )


def logout(request: Any) -> Response:
    return Response(
        body="",
        status_code=303,
        headers={"Location": _home(), "Set-Cookie": session.clear_cookie(_secure()), "Cache-Control": "no-store"},
    )


def asset(name: str) -> Response:
    from chalicelib.dashboard import asset as load

    found = load(name) if isinstance(name, str) else None
    if found is None:
        return Response(
            body=json.dumps({"error": {"code": "not_found", "message": "no such dashboard asset"}}),
            status_code=404,
            headers={"Content-Type": "application/json"},
        )
    return Response(
        body=found.body,
        status_code=200,
        headers={
            "Content-Type": found.content_type,
            "Cache-Control": ASSET_CACHE,
            "X-Content-Type-Options": "nosniff",
        },
    )
