"""`GET`/`POST /unsubscribe/email/{token}`: the page behind every email's one-click unsubscribe link.

GET shows a confirm button and changes nothing (link scanners prefetch GETs); POST (the button,
or a mail client's RFC 8058 one-click POST of `List-Unsubscribe=One-Click`) unsubscribes and
answers 200. An invalid link is a 404 page."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from chalicelib.config import settings


@dataclass(frozen=True)
class UnsubscribePage:
    status_code: int
    html: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",  # the URL carries the token
            "X-Robots-Tag": "noindex",
        }


def unsubscribe_page(token: str, method: str, *, now: datetime | None = None) -> UnsubscribePage:
    from chalicelib.services.consent import UnsubscribeState, unsubscribe_by_token

    state = unsubscribe_by_token(token, method.upper() == "POST", now=now)
    name = html.escape(settings().display_name)
    if state is UnsubscribeState.INVALID:
        return UnsubscribePage(404, _page("Link not valid", "<p>This unsubscribe link is not valid.</p>"))
    if state is UnsubscribeState.DONE:
        return UnsubscribePage(
            200,
            _page(
                "Unsubscribed",
                f"<p>You are unsubscribed: {name} will send you no more email.</p>"
                "<p>Messages by SMS or WhatsApp are not affected; reply STOP there to stop them.</p>",
            ),
        )
    return UnsubscribePage(
        200,
        _page(
            "Unsubscribe",
            f"<p>Stop receiving email from {name}?</p>"
            '<form method="post" action=""><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>',
        ),
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
