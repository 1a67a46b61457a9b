"""Sending email through SendGrid's v3 Mail Send: `send_email` for one plain-text email, and the
channel contract's `send` for one outgoing message."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Mapping
from typing import Any

from chalicelib.channels.base import Outgoing
from chalicelib.channels.sendgrid.message import PROVIDER
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.messages import Channel, DeliveryStatus
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage

DEFAULT_API_BASE_URL = "https://api.sendgrid.com"
# Email: long bodies, media as links in the text (attachments would need the bytes), a subject.
RULES = {
    Channel.EMAIL.value: ChannelRules(name="email", body_chars=100_000, media=10, media_as_links=True, subject=True)
}
SEND_TIMEOUT_SECONDS = 10.0
HUB_MESSAGE_ID_ARG = "hub_message_id"


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """Send one email: from the business address the customer wrote to, else the configured sender.

    The body is sent as it is (the caller has appended the media links and the unsubscribe footer),
    and `outgoing.headers` (List-Unsubscribe) go with it. The API key is configured: `tokens` is not
    used. Raises ProviderRejected / ProviderUnavailable as `send_email` does.
    """
    from chalicelib.config import secret, settings

    config = settings()
    return send_email(
        api_key=secret("sendgrid_api_key"),
        from_email=outgoing.sender or config.sendgrid_from_email,
        from_name=config.sendgrid_from_name or None,
        to_email=outgoing.recipient,
        to_name=outgoing.recipient_name,
        subject=outgoing.subject or "",
        text=outgoing.body,
        in_reply_to=outgoing.in_reply_to,
        references=list(outgoing.references),
        custom_args={HUB_MESSAGE_ID_ARG: outgoing.hub_message_id},
        headers=dict(outgoing.headers),
        api_base_url=config.sendgrid_api_base_url,
        timeout=outgoing.timeout,
    )


def send_email(
    *,
    api_key: str,
    from_email: str,
    to_email: str,
    subject: str,
    text: str,
    from_name: str | None = None,
    to_name: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    custom_args: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    api_base_url: str = DEFAULT_API_BASE_URL,
    timeout: float = SEND_TIMEOUT_SECONDS,
) -> SentMessage:
    """Send one plain-text email; the provider message id is SendGrid's X-Message-Id.

    `in_reply_to`/`references` make it thread under the customer's email in their mail client.
    Raises ProviderRejected for a 4xx (the HTTP status is the code) and ProviderUnavailable for
    network failures, timeouts, 429 and 5xx.
    """
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient

    payload = mail_payload(
        from_email=from_email,
        from_name=from_name,
        to_email=to_email,
        to_name=to_name,
        subject=subject,
        text=text,
        in_reply_to=in_reply_to,
        references=references,
        custom_args=custom_args,
        headers=headers,
    )
    client = SendGridAPIClient(api_key, host=api_base_url.rstrip("/"))
    try:
        # `client.mail.send.post` is the documented v3 call; unlike `send()` it takes a timeout.
        response = client.client.mail.send.post(request_body=payload, timeout=timeout)
    except HTTPError as exc:
        status = int(exc.status_code)
        if status == 429 or status >= 500:
            raise ProviderUnavailable(PROVIDER, f"HTTP {status}") from None
        raise ProviderRejected(PROVIDER, str(status), _error_text(exc.body), status) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused connections
        raise ProviderUnavailable(PROVIDER, type(exc).__name__) from None
    message_id = response.headers.get("X-Message-Id") if response.headers is not None else None
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=message_id or None,
        status=DeliveryStatus.ACCEPTED,
        sender_address=from_email,
        recipient_address=to_email,
    )


def mail_payload(
    *,
    from_email: str,
    to_email: str,
    subject: str,
    text: str,
    from_name: str | None = None,
    to_name: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    custom_args: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Mail Send JSON body."""
    recipient: dict[str, str] = {"email": to_email}
    if to_name:
        recipient["name"] = _header_safe(to_name)
    sender: dict[str, str] = {"email": from_email}
    if from_name:
        sender["name"] = _header_safe(from_name)
    payload: dict[str, Any] = {
        "personalizations": [{"to": [recipient]}],
        "from": sender,
        "subject": _header_safe(subject),
        "content": [{"type": "text/plain", "value": text}],
    }
    extra: dict[str, str] = {str(name): _header_safe(str(value)) for name, value in (headers or {}).items()}
    if in_reply_to:
        extra["In-Reply-To"] = in_reply_to
    if references:
        extra["References"] = " ".join(references)
    if extra:
        payload["headers"] = extra
    if custom_args:
        payload["custom_args"] = {str(key): str(value) for key, value in custom_args.items()}
    return payload


def _header_safe(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text).strip()


def _error_text(body: Any) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one line."""
    try:
        raw = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
        errors = json.loads(raw).get("errors") or []
        parts = [
            f"{error.get('field')}: {error.get('message')}" if error.get("field") else str(error.get("message"))
            for error in errors
            if isinstance(error, dict)
        ]
        return "; ".join(parts)[:1000] or "request refused"
    except (ValueError, AttributeError):
        return "request refused"
