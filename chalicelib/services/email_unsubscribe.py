"""The one-click unsubscribe link every email carries (RFC 2369 List-Unsubscribe, RFC 8058), signed
with UNSUBSCRIBE_SECRET: the URL, the headers and the footer. The page that follows it is
services/consent.py's `unsubscribe_page`."""

from __future__ import annotations

from chalicelib.channels import unsubscribe
from chalicelib.config import secret, settings
from chalicelib.domain.messages import Channel


class UnsubscribeNotConfigured(ValueError):
    """UNSUBSCRIBE_SECRET is not set: no unsubscribe link can be made."""


def unsubscribe_link(customer_id: str) -> str:
    key = secret("unsubscribe_secret")
    if not key:
        raise UnsubscribeNotConfigured("set UNSUBSCRIBE_SECRET to send email with an unsubscribe link")
    token = unsubscribe.make_token(customer_id, Channel.EMAIL.value, key)
    return unsubscribe.unsubscribe_url(settings().public_base_url, token)


def unsubscribe_headers(customer_id: str) -> dict[str, str]:
    """`List-Unsubscribe` (https one-click URL, then a mailto:) and `List-Unsubscribe-Post` for an
    email to this customer. Raises UnsubscribeNotConfigured without UNSUBSCRIBE_SECRET."""
    url = unsubscribe_link(customer_id)
    token = url.rsplit("/", 1)[-1]
    address = settings().unsubscribe_address
    mailto = unsubscribe.mailto_uri(address, token) if address else None
    return unsubscribe.list_unsubscribe_headers(url, mailto)


def unsubscribe_footer(customer_id: str) -> str:
    """The text that ends every email: who sends it, and the unsubscribe link."""
    return unsubscribe.email_footer(unsubscribe_link(customer_id), settings().display_name)
