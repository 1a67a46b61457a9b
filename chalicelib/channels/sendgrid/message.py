"""What an email becomes, whichever posting mode carried it: the sender and recipient addresses,
the threading ids and the dedupe id, the body chosen, and the header text they are read from."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from email.message import Message
from email.utils import getaddresses
from typing import Any

from chalicelib.channels.base import MalformedPayload
from chalicelib.channels.sendgrid.html_text import html_to_text
from chalicelib.domain.identity import InvalidIdentity, email_identity, parse_email
from chalicelib.domain.messages import Channel, EmailThreading, InboundMessage, Media

PROVIDER = "sendgrid"

# Longer Message-IDs are invalid (RFC 5322 caps lines at 998) and would make an oversized
# dedupe key, so they are replaced by their digest.
_MAX_PROVIDER_MESSAGE_ID = 255

# policy.default's header parser is quadratic, or deeply recursive, on hostile values (one subject
# of 20,000 encoded words takes gigabytes), so it only ever sees the first few kilobytes of a
# header; no legitimate header needs more to be read. Message-IDs are read from the raw text.
MAX_HEADER_CHARS = 8192
_MAX_ADDRESS_CHARS = 998  # an unparseable recipient is kept as written, up to one header line


def inbound_message(
    *,
    sender_address: str,
    display_name: str,
    recipient: str,
    subject: str,
    body: str,
    headers: Message,
    media: list[Media],
) -> InboundMessage:
    threading = _threading(headers)
    provider_message_id = _provider_message_id(threading.message_id) or _content_hash(
        sender_address, recipient, subject, _raw_header(headers, "date"), body
    )
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=provider_message_id,
        channel=Channel.EMAIL,
        sender=email_identity(sender_address),
        sender_address=sender_address,
        recipient_address=recipient,
        body=body,
        subject=subject or None,
        media=media,
        profile_name=display_name or None,
        email=threading,
    )


def sender_of(from_text: str, envelope: Mapping[str, Any]) -> tuple[str, str]:
    """(address, display name) of the From header, else of the envelope's return path."""
    from_header = _lenient_email(from_text)
    if from_header is not None:
        return from_header
    envelope_from = _lenient_email(text_or_none(envelope.get("from")) or "")
    if envelope_from is not None:
        return envelope_from[0], ""
    if not from_text.strip():
        raise MalformedPayload("multipart body has no 'from' field and the envelope has no sender")
    raise MalformedPayload("'from' field is not an email address and the envelope has no sender")


def _lenient_email(text: str) -> tuple[str, str] | None:
    parsed = _checked_email(text)
    if parsed is not None:
        return parsed
    # "Ada Lovelace ada@example.com" (no angle brackets) still names one clear address.
    found = re.search(r"[^\s<>\"',;]+@[^\s<>\"',;]+", text[:MAX_HEADER_CHARS])
    if found is None:
        return None
    parsed = _checked_email(found.group(0))
    return None if parsed is None else (parsed[0], text[: found.start()].strip(" \t\"'<"))


def _checked_email(text: str) -> tuple[str, str] | None:
    """parse_email's (address, display name), or None for anything but one valid address."""
    try:
        return parse_email(text[:MAX_HEADER_CHARS])
    except (InvalidIdentity, RecursionError):  # parseaddr recurses once per nested "(" comment
        return None


def envelope_recipient(envelope: Mapping[str, Any]) -> str:
    recipients = envelope.get("to")
    if isinstance(recipients, str):
        return recipients
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], str):
        return recipients[0]
    return ""


def _addresses(header_value: str) -> list[str]:
    if not header_value.strip():
        return []
    try:
        return [address for _, address in getaddresses([header_value[:MAX_HEADER_CHARS]]) if address]
    except RecursionError:  # one level per nested "(" comment
        return []


def recipient_of(envelope_to: str, to_headers: list[str]) -> str:
    """The envelope's address, else the first To address, normalised; else the first as written."""
    written = [value.strip() for value in [envelope_to, *to_headers] if value.strip()]
    if not written:
        raise MalformedPayload("multipart body has no recipient: no envelope 'to' and no 'to' field")
    candidates = [envelope_to, *(address for header in to_headers for address in _addresses(header))]
    valid = (_checked_email(candidate) for candidate in candidates if candidate.strip())
    return next((parsed[0] for parsed in valid if parsed is not None), written[0][:_MAX_ADDRESS_CHARS])


def _threading(headers: Message) -> EmailThreading:
    message_ids = _message_ids(_raw_header(headers, "message-id"))
    in_reply_to = _message_ids(_raw_header(headers, "in-reply-to"))
    return EmailThreading(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_message_ids(_raw_header(headers, "references")),
    )


def _message_ids(header_value: str) -> list[str]:
    """`<id>` tokens with folding whitespace removed; a bare id without brackets is kept as is."""
    bracketed = re.findall(r"<[^<>]*>", header_value)
    ids = [re.sub(r"\s+", "", found) for found in bracketed]
    ids = [found for found in ids if found != "<>"]
    if ids or bracketed:
        return ids
    bare = re.sub(r"\s+", "", header_value)
    return [bare] if bare else []


def _provider_message_id(message_id: str | None) -> str:
    bare = re.sub(r"[<>\s]+", "", message_id or "")
    if len(bare) > _MAX_PROVIDER_MESSAGE_ID:
        return "sha256:" + hashlib.sha256(bare.encode("utf-8", errors="surrogatepass")).hexdigest()
    return bare


def _content_hash(sender: str, recipient: str, subject: str, date: str, body: str) -> str:
    """A stable id for an email without Message-ID, so SendGrid's retries of it dedupe."""
    canonical = json.dumps([sender, recipient, subject, date.strip(), body], ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def header_text(message: Message, name: str) -> str:
    """A header's decoded value (encoded words, raw UTF-8), or its raw text if it cannot be parsed."""
    try:
        value = message.get(name)
    except Exception:
        return _raw_header(message, name)
    return "" if value is None else unfold(str(value)).strip()


def _raw_header(message: Message, name: str) -> str:
    """The first `name` header exactly as written, unfolded."""
    raw = next((value for key, value in message.raw_items() if key.lower() == name), "")
    return repair_surrogates(unfold(str(raw))).strip()


def best_body(text: str, html: str) -> str:
    """The text body, or the html one made readable when the email has no (non-blank) text."""
    plain = re.sub(r"\r\n?", "\n", text).strip()
    return plain if plain else html_to_text(html)


def single_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def bare_content_id(content_id: str | None) -> str | None:
    bare = (content_id or "").strip().strip("<>").strip()
    return bare or None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def json_object(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def lowercase_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    lowered: dict[str, Any] = {}
    for key, value in mapping.items():
        lowered.setdefault(str(key).lower(), value)
    return lowered


def unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def repair_surrogates(value: str) -> str:
    """Header text the parser read as ASCII: undecodable bytes are re-read as UTF-8."""
    try:
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeError:
        return value.encode("utf-8", errors="replace").decode("utf-8")
