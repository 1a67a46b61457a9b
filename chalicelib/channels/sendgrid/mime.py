"""Raw mode ("Send Raw"): the whole MIME message, read with the email package under bounds that
keep hostile input cheap; its bodies, charsets and attachments. Also the header parser the parsed
mode's `headers` field goes through."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import Parser
from typing import cast

from chalicelib.channels.sendgrid.html_text import html_to_text
from chalicelib.channels.sendgrid.message import (
    MAX_HEADER_CHARS,
    bare_content_id,
    best_body,
    envelope_recipient,
    header_text,
    inbound_message,
    json_object,
    recipient_of,
    sender_of,
    single_line,
)
from chalicelib.domain.messages import InboundMessage, Media

_DEFAULT_CHARSET = "utf-8"
_MAX_MIME_DEPTH = 20

_MAX_MIME_HEADER_CHARS = 2048


class _BoundedHeaderRegistry(HeaderRegistry):
    def __call__(self, name: str, value: str) -> BaseHeader:
        limit = _MAX_MIME_HEADER_CHARS if name.lower().startswith("content-") else MAX_HEADER_CHARS
        return super().__call__(name, value[:limit])


_MIME_POLICY = email_policy.default.clone(header_factory=_BoundedHeaderRegistry())
# Re-serialising a forwarded message to measure it: canonical CRLF, headers as written (refolding
# would re-parse them).
_SOURCE_POLICY = _MIME_POLICY.clone(refold_source="none", linesep="\r\n")


def raw_mode_message(raw: bytes, text_of: Callable[[str], str]) -> InboundMessage:
    """The email of a raw-mode post: the MIME message `raw`, with the other form fields (as
    `text_of` decodes them) where its headers are missing."""
    envelope = json_object(text_of("envelope"))
    mime = cast(EmailMessage, message_from_bytes(raw, policy=_MIME_POLICY))

    from_header = header_text(mime, "from") or text_of("from")
    sender_address, display_name = sender_of(from_header, envelope)
    recipient = recipient_of(envelope_recipient(envelope), [header_text(mime, "to"), text_of("to")])
    subject = single_line(header_text(mime, "subject") or text_of("subject"))
    return inbound_message(
        sender_address=sender_address,
        display_name=display_name,
        recipient=recipient,
        subject=subject,
        body=_mime_body(mime),
        headers=mime,
        media=[_mime_media(part) for part in _mime_attachments(mime)],
    )


def _mime_body(mime: EmailMessage) -> str:
    preferred = _body_part(mime, ("plain", "html"))
    if preferred is None:
        return ""
    if preferred.get_content_subtype() == "html":
        return html_to_text(_part_text(preferred))
    html = _body_part(mime, ("html",))
    return best_body(_part_text(preferred), _part_text(html) if html is not None else "")


def _body_part(mime: EmailMessage, preferencelist: tuple[str, ...]) -> Message | None:
    try:
        return mime.get_body(preferencelist=preferencelist)
    except Exception:
        # get_body iterates the text of a multipart whose boundary is missing as if it were its
        # parts; walk() does not, so fall back to the first inline part of a preferred type.
        wanted = [f"text/{subtype}" for subtype in preferencelist]
        candidates = [part for part in mime.walk() if part.get_content_type() in wanted and not part.is_attachment()]
        candidates.sort(key=lambda part: wanted.index(part.get_content_type()))
        return candidates[0] if candidates else None


def _part_text(part: Message) -> str:
    payload = None if part.is_multipart() else part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_text(payload, part.get_content_charset())


def _mime_attachments(mime: Message, depth: int = 0) -> Iterator[EmailMessage]:
    """Attachment parts, including inline images kept inside the alternative/related body."""
    if depth > _MAX_MIME_DEPTH or not isinstance(mime, EmailMessage):
        return
    if not mime.is_multipart():
        if depth == 0 and (mime.is_attachment() or mime.get_content_maintype() not in {"text", "message"}):
            yield mime  # the whole email is one file (e.g. a scanner sending a bare PDF)
        return
    attachments = list(mime.iter_attachments())
    attachment_ids = {id(part) for part in attachments}
    for part in mime.iter_parts():
        if not isinstance(part, EmailMessage):
            continue
        if id(part) not in attachment_ids or part.get_content_maintype() == "multipart":
            # A body container (alternative/related) may still hold inline images.
            yield from _mime_attachments(part, depth + 1)
        elif not _is_stray_body_fragment(part):
            yield part


def _is_stray_body_fragment(part: EmailMessage) -> bool:
    # Some clients split a body around inline images into several unnamed text parts.
    return part.get_content_type() in {"text/plain", "text/html"} and not (part.is_attachment() or part.get_filename())


def _mime_media(part: EmailMessage) -> Media:
    return Media(
        filename=part.get_filename() or None,
        content_type=part.get_content_type(),
        size=_mime_part_size(part),
        content_id=bare_content_id(header_text(part, "content-id")),
    )


def _mime_part_size(part: EmailMessage) -> int | None:
    if not part.is_multipart():
        payload = part.get_payload(decode=True)
        return len(payload) if isinstance(payload, bytes) else None
    try:
        # A forwarded message/rfc822 was parsed into a message: measure it re-serialised.
        return len(part.get_payload(0).as_bytes(policy=_SOURCE_POLICY))
    except Exception:
        return None


def header_block(text: str) -> Message:
    return Parser(policy=_MIME_POLICY).parsestr(text.strip("\r\n") + "\n\n", headersonly=True)


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes in the named charset; an unknown or non-text charset falls back to UTF-8."""
    name = (charset or "").strip().strip("\"'") or _DEFAULT_CHARSET
    try:
        codecs.lookup(name)
        return data.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode(_DEFAULT_CHARSET, errors="replace")
