"""The small rating page an email survey links to: `GET /csat/{token}` shows five ratings and a
comment box, `POST /csat/{token}` records them. Plain HTML with no script and no outside
resource, under a CSP that allows none; errors are pages too (the reader is a customer)."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from chalice import Response

from chalicelib.config import settings
from chalicelib.domain.surveys import RATINGS
from chalicelib.services import surveys
from chalicelib.services.errors import Conflict, InvalidRequest, NotFound

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 8192


def _page(title: str, body: str, status: int = 200) -> Response:
    name = html.escape(settings().display_name)
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · {name}</title></head><body>"
        f"<main><h1>{html.escape(title)}</h1>{body}<p><small>{name}</small></p></main></body></html>"
    )
    return Response(body=document, status_code=status, headers=HEADERS)


def _failure(exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return _page("Link not valid", "<p>This survey link is not valid.</p>", 404)
    if isinstance(exc, Conflict):
        return _page("Survey closed", f"<p>{html.escape(str(exc)).capitalize()}. Thank you.</p>", 409)
    return _page("Please try again", f"<p>{html.escape(str(exc))}</p>", 400)


def show(token: str) -> Response:
    try:
        surveys.page(token)
    except (NotFound, Conflict, InvalidRequest) as exc:
        return _failure(exc)
    options = "".join(
        f'<p><label><input type="radio" name="rating" value="{rating}" required> '
        f"{html.escape(surveys.config().labels.get(rating, str(rating)))}</label></p>"
        for rating in RATINGS
    )
    form = (
        f'<form method="post" action="/csat/{html.escape(token)}"><fieldset><legend>Your rating</legend>{options}'
        '</fieldset><p><label>Anything to add? (optional)<br><textarea name="comment" rows="4" cols="40" '
        'maxlength="2000"></textarea></label></p><p><button type="submit">Send</button></p></form>'
    )
    return _page("How did we do?", form)


def submit(token: str, request: Any) -> Response:
    raw = request.raw_body or b""
    if len(raw) > MAX_FORM_BYTES:
        return _page("Please try again", "<p>That answer is too long.</p>", 413)
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _page("Please try again", "<p>The answer could not be read.</p>", 400)
    rating_text = (fields.get("rating") or [""])[0].strip()
    if rating_text not in ("1", "2", "3", "4", "5"):
        return _page("Please try again", "<p>Choose a rating from 1 to 5.</p>", 400)
    try:
        surveys.submit(token, int(rating_text), (fields.get("comment") or [""])[0])
    except (NotFound, Conflict, InvalidRequest) as exc:
        return _failure(exc)
    return _page("Thank you", "<p>Your rating was recorded.</p>")
