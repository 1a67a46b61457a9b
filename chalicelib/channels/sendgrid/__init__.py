"""SendGrid: email in through Inbound Parse, email out through v3 Mail Send.

SendGrid posts every email received on the parse hostname as multipart/form-data, in one of two
modes chosen in its settings:

* default ("parsed"): SendGrid splits the email into fields (`from`, `to`, `subject`, `text`,
  `html`, `headers`, `envelope`, `charsets`, `attachment-info`, `content-ids`, ...) and posts each
  attachment as a file part named `attachmentN`;
* raw ("Send Raw"): the whole MIME message arrives in a field named `email`, next to `envelope`,
  `to`, `from`, `subject` and the spam/SPF/DKIM results.

Inbound Parse requests are not signed, so the route is protected by a shared secret that the
SendGrid URL carries as HTTP Basic credentials or as a `token` query parameter.

This module is the channel contract (channels/registry.py); each job has its own module:

    inbound.py    the shared secret, the multipart/form-data, the parsed mode
    mime.py       the raw mode: MIME bodies, charsets, attachments
    message.py    what both modes make of an email: addresses, threading, the InboundMessage
    html_text.py  HTML to text
    send.py       sending (`send_email`, and the contract's `send`)
"""

from __future__ import annotations

import json

from chalicelib.channels.base import WebhookRequest
from chalicelib.channels.sendgrid.html_text import html_to_text
from chalicelib.channels.sendgrid.inbound import TOKEN_QUERY_PARAMETER, parse_inbound, verify_token
from chalicelib.channels.sendgrid.message import PROVIDER
from chalicelib.channels.sendgrid.send import (
    DEFAULT_API_BASE_URL,
    HUB_MESSAGE_ID_ARG,
    RULES,
    SEND_TIMEOUT_SECONDS,
    mail_payload,
    send,
    send_email,
)
from chalicelib.domain.webhook_items import BatchOutcome, WebhookItem

ACKNOWLEDGEMENT_TYPE = "application/json"

__all__ = [
    "ACKNOWLEDGEMENT_TYPE",
    "DEFAULT_API_BASE_URL",
    "HUB_MESSAGE_ID_ARG",
    "PROVIDER",
    "RULES",
    "SEND_TIMEOUT_SECONDS",
    "TOKEN_QUERY_PARAMETER",
    "acknowledgement",
    "html_to_text",
    "mail_payload",
    "missing_settings",
    "parse",
    "parse_inbound",
    "send",
    "send_email",
    "verify",
    "verify_token",
]


def verify(request: WebhookRequest) -> None:
    """Accept the request only if it presents SENDGRID_INBOUND_TOKEN; raise WebhookRejected."""
    from chalicelib.config import secret

    verify_token(request, secret("sendgrid_inbound_token"))


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """The one email an Inbound Parse request carries; MalformedPayload says why it cannot be read."""
    from chalicelib.config import settings

    return [parse_inbound(request, settings().default_phone_region)]


def acknowledgement(outcome: BatchOutcome) -> str:
    """`{"status": "stored" | "duplicate", "message_id": ...}`: SendGrid only needs the 200."""
    status = "duplicate" if outcome.duplicates > 0 else "stored"
    message_id = outcome.stored[0] if outcome.stored else None
    return json.dumps({"status": status, "message_id": message_id}, separators=(",", ":"))


def missing_settings(channel: str) -> list[str]:
    """What sending an email still needs."""
    from chalicelib.config import secret, settings

    needed = {
        "SENDGRID_API_KEY": secret("sendgrid_api_key"),
        "SENDGRID_FROM_EMAIL": settings().sendgrid_from_email,
        # every email carries a one-click unsubscribe link signed with it
        "UNSUBSCRIBE_SECRET": secret("unsubscribe_secret"),
    }
    return [name for name, value in needed.items() if not value]
