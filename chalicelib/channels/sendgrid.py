"""SendGrid Inbound Parse: authenticate the webhook and read the email it carries.

SendGrid posts every email received on the parse hostname as multipart/form-data, in one of two
modes chosen in its settings:

* default ("parsed"): SendGrid splits the email into fields (`from`, `to`, `subject`, `text`,
  `html`, `headers`, `envelope`, `charsets`, `attachment-info`, `content-ids`, ...) and posts each
  attachment as a file part named `attachmentN`;
* raw ("Send Raw"): the whole MIME message arrives in a field named `email`, next to `envelope`,
  `to`, `from`, `subject` and the spam/SPF/DKIM results.

Inbound Parse requests are not signed, so the route is protected by a shared secret that the
SendGrid URL carries as HTTP Basic credentials or as a `token` query parameter.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import hmac
import http.client
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.errors import CloseBoundaryNotFoundDefect
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser, Parser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value, getaddresses
from html import unescape
from html.parser import HTMLParser
from typing import Any, cast

from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import InvalidIdentity, email_identity, parse_email
from chalicelib.domain.messages import Channel, DeliveryStatus, EmailThreading, InboundMessage, Media
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage

PROVIDER = "sendgrid"
TOKEN_QUERY_PARAMETER = "token"  # noqa: S105 - a parameter name, not a secret

_DEFAULT_CHARSET = "utf-8"
# Longer Message-IDs are invalid (RFC 5322 caps lines at 998) and would make an oversized
# dedupe key, so they are replaced by their digest.
_MAX_PROVIDER_MESSAGE_ID = 255
_MAX_MIME_DEPTH = 20


# policy.default's header parser is quadratic, or deeply recursive, on hostile values (one subject
# of 20,000 encoded words takes gigabytes), so it only ever sees the first few kilobytes of a
# header; no legitimate header needs more to be read. Message-IDs are read from the raw text.
_MAX_HEADER_CHARS = 8192
_MAX_MIME_HEADER_CHARS = 2048
_MAX_ADDRESS_CHARS = 998  # an unparseable recipient is kept as written, up to one header line


class _BoundedHeaderRegistry(HeaderRegistry):
    def __call__(self, name: str, value: str) -> BaseHeader:
        limit = _MAX_MIME_HEADER_CHARS if name.lower().startswith("content-") else _MAX_HEADER_CHARS
        return super().__call__(name, value[:limit])


_MIME_POLICY = email_policy.default.clone(header_factory=_BoundedHeaderRegistry())
# Re-serialising a forwarded message to measure it: canonical CRLF, headers as written (refolding
# would re-parse them).
_SOURCE_POLICY = _MIME_POLICY.clone(refold_source="none", linesep="\r\n")


# --------------------------------------------------------------------------------------------
# Verification


def verify(request: WebhookRequest, token: str) -> None:
    """Accept the request only if it presents the shared inbound token; raise WebhookRejected."""
    if not token:
        raise WebhookRejected("SENDGRID_INBOUND_TOKEN is not configured")
    presented = _presented_tokens(request)
    if not presented:
        raise WebhookRejected("no token presented")
    expected = token.encode("utf-8")
    # Every candidate is compared so the time taken does not reveal which one matched.
    matches = [hmac.compare_digest(expected, candidate) for candidate in presented]
    if not any(matches):
        raise WebhookRejected("token does not match")


def _presented_tokens(request: WebhookRequest) -> list[bytes]:
    tokens: list[bytes] = []
    basic_password = _basic_auth_password(request.header("authorization"))
    if basic_password is not None:
        tokens.append(basic_password)
    query_token = request.query_value(TOKEN_QUERY_PARAMETER)
    if query_token is not None:
        tokens.append(query_token.encode("utf-8", errors="surrogatepass"))
    return tokens


def _basic_auth_password(authorization: str) -> bytes | None:
    """The password of `Basic base64(user:password)`; None when no Basic credentials are sent."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        # Another scheme may belong to a proxy in front of the hub; the query token still counts.
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("Authorization header is not valid Basic credentials") from None
    _user, colon, password = decoded.partition(b":")
    if not colon:
        raise WebhookRejected("Authorization header is not valid Basic credentials")
    return password  # the user name carries no secret, so any is accepted


# --------------------------------------------------------------------------------------------
# Parsing


def parse_inbound(request: WebhookRequest, default_region: str = "US") -> InboundMessage:
    """The email an Inbound Parse request carries; MalformedPayload says why it cannot be read.

    `default_region` is accepted for the same signature as the phone channels; email identities
    do not need it.
    """
    del default_region
    try:
        fields = _read_form_fields(request)
        if "email" in fields:
            return _parse_raw_mode(fields)
        return _parse_parsed_mode(fields)
    except MalformedPayload:
        raise
    except Exception as exc:
        # The email package and the html parser have corner cases that raise on hostile input;
        # whatever they are, the caller must get a 400, never a 500 that SendGrid would retry.
        raise MalformedPayload(f"email could not be parsed ({type(exc).__name__})") from None


# --- multipart/form-data ---------------------------------------------------------------------


@dataclass(frozen=True)
class _FormField:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    charset: str | None = None


class _FormDataPolicy(Compat32):
    """Header values as plain text: raw UTF-8 (as browsers and SendGrid send filenames) repaired."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return _repair_surrogates(_unfold(value))


class _FormDataMessage(Message):
    """A form-data message whose parts stay opaque bytes.

    Attachments arrive with their own media type; without this, a forwarded email posted as
    message/rfc822 (or a multipart file) would be parsed into sub-messages and lose its bytes.
    """

    def get_content_type(self) -> str:
        declared = super().get_content_type()
        return declared if declared == "multipart/form-data" else "application/octet-stream"


_FORM_POLICY = _FormDataPolicy()


def _read_form_fields(request: WebhookRequest) -> dict[str, _FormField]:
    """Form fields by lower-cased name; the first of repeated names wins."""
    if request.content_type != "multipart/form-data":
        raise MalformedPayload("Content-Type must be multipart/form-data with a boundary")
    content_type = re.sub(r"[\r\n]+", " ", request.header("content-type"))
    synthetic = b"Content-Type: " + content_type.encode("utf-8", errors="replace") + b"\r\n\r\n"
    form = BytesParser(_FormDataMessage, policy=_FORM_POLICY).parsebytes(synthetic + request.body)
    if not form.get_boundary():
        raise MalformedPayload("Content-Type must be multipart/form-data with a boundary")
    if not form.is_multipart():
        raise MalformedPayload("multipart body does not contain the boundary declared in Content-Type")
    if any(isinstance(defect, CloseBoundaryNotFoundDefect) for defect in form.defects):
        raise MalformedPayload("multipart body is truncated: its closing boundary is missing")
    fields: dict[str, _FormField] = {}
    for part in form.get_payload():
        field = _form_field(part)
        if field is not None:
            fields.setdefault(field.name.lower(), field)
    if not fields:
        raise MalformedPayload("multipart body has no named form fields")
    return fields


def _form_field(part: Message) -> _FormField | None:
    name = part.get_param("name", header="content-disposition")
    if not name:
        return None
    payload = None if part.is_multipart() else part.get_payload(decode=True)
    return _FormField(
        name=collapse_rfc2231_value(name),
        data=payload if isinstance(payload, bytes) else b"",
        filename=part.get_filename() or None,
        content_type=_declared_content_type(part),
        charset=_param_text(part.get_param("charset")),
    )


def _declared_content_type(part: Message) -> str | None:
    declared = (part.get("content-type") or "").split(";", 1)[0].strip().lower()
    return declared if "/" in declared else None


def _param_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return collapse_rfc2231_value(value) or None


# --- parsed (default) mode -------------------------------------------------------------------


def _parse_parsed_mode(fields: Mapping[str, _FormField]) -> InboundMessage:
    charsets = _lowercase_keys(_json_object(_field_text(fields, "charsets")))
    text_of = _FieldReader(fields, charsets)
    envelope = _json_object(text_of("envelope"))
    headers = _header_block(text_of("headers"))

    sender_address, display_name = _sender(text_of("from"), envelope)
    recipient = _recipient(_envelope_recipient(envelope), [text_of("to")])
    subject = _single_line(text_of("subject"))
    body = _best_body(text_of("text"), text_of("html"))
    return _inbound_message(
        sender_address=sender_address,
        display_name=display_name,
        recipient=recipient,
        subject=subject,
        body=body,
        headers=headers,
        media=_parsed_mode_media(fields, text_of),
    )


class _FieldReader:
    """Text of a form field, decoded with the charset SendGrid reports for it."""

    def __init__(self, fields: Mapping[str, _FormField], charsets: Mapping[str, Any]) -> None:
        self._fields = fields
        self._charsets = charsets

    def __call__(self, name: str) -> str:
        reported = self._charsets.get(name)
        return _field_text(self._fields, name, reported if isinstance(reported, str) else None)


def _field_text(fields: Mapping[str, _FormField], name: str, charset: str | None = None) -> str:
    field = fields.get(name)
    if field is None or field.filename is not None:
        return ""
    return _decode_text(field.data, charset or field.charset)


def _parsed_mode_media(fields: Mapping[str, _FormField], text_of: _FieldReader) -> list[Media]:
    """Attachment metadata from `attachment-info`, `content-ids` and the `attachmentN` files."""
    info = _lowercase_keys(_json_object(text_of("attachment-info")))
    content_ids = _json_object(text_of("content-ids"))
    content_id_by_attachment = {
        str(attachment).lower(): str(content_id)
        for content_id, attachment in content_ids.items()
        if isinstance(attachment, str)
    }
    file_fields = {
        name: field
        for name, field in fields.items()
        if field.filename is not None or re.fullmatch(r"attachment\d+", name)
    }
    file_fields.pop("email", None)
    names = sorted(set(info) | set(file_fields), key=_attachment_order)
    return [
        _attachment_media(
            file_fields.get(name),
            info.get(name) if isinstance(info.get(name), dict) else {},
            content_id_by_attachment.get(name),
        )
        for name in names
    ]


def _attachment_order(name: str) -> tuple[int, int, str]:
    numbered = re.fullmatch(r"attachment(\d+)", name)
    return (0, int(numbered.group(1)), name) if numbered else (1, 0, name)


def _attachment_media(field: _FormField | None, info: Mapping[str, Any], content_id: str | None) -> Media:
    return Media(
        filename=_text_or_none(info.get("filename"))
        or _text_or_none(info.get("name"))
        or (field.filename if field else None),
        content_type=_text_or_none(info.get("type")) or (field.content_type if field else None),
        size=len(field.data) if field is not None else None,
        content_id=_bare_content_id(_text_or_none(info.get("content-id")) or content_id),
    )


# --- raw mode --------------------------------------------------------------------------------


def _parse_raw_mode(fields: Mapping[str, _FormField]) -> InboundMessage:
    raw = fields["email"].data
    if not raw.strip():
        raise MalformedPayload("'email' field is empty")
    charsets = _lowercase_keys(_json_object(_field_text(fields, "charsets")))
    text_of = _FieldReader(fields, charsets)
    envelope = _json_object(text_of("envelope"))
    mime = cast(EmailMessage, message_from_bytes(raw, policy=_MIME_POLICY))

    from_header = _header_text(mime, "from") or text_of("from")
    sender_address, display_name = _sender(from_header, envelope)
    recipient = _recipient(_envelope_recipient(envelope), [_header_text(mime, "to"), text_of("to")])
    subject = _single_line(_header_text(mime, "subject") or text_of("subject"))
    return _inbound_message(
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
    return _best_body(_part_text(preferred), _part_text(html) if html is not None else "")


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
    return _decode_text(payload, part.get_content_charset())


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
        content_id=_bare_content_id(_header_text(part, "content-id")),
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


# --- shared ----------------------------------------------------------------------------------


def _inbound_message(
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


def _sender(from_text: str, envelope: Mapping[str, Any]) -> tuple[str, str]:
    """(address, display name) of the From header, else of the envelope's return path."""
    from_header = _lenient_email(from_text)
    if from_header is not None:
        return from_header
    envelope_from = _lenient_email(_text_or_none(envelope.get("from")) or "")
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
    found = re.search(r"[^\s<>\"',;]+@[^\s<>\"',;]+", text[:_MAX_HEADER_CHARS])
    if found is None:
        return None
    parsed = _checked_email(found.group(0))
    return None if parsed is None else (parsed[0], text[: found.start()].strip(" \t\"'<"))


def _checked_email(text: str) -> tuple[str, str] | None:
    """parse_email's (address, display name), or None for anything but one valid address."""
    try:
        return parse_email(text[:_MAX_HEADER_CHARS])
    except (InvalidIdentity, RecursionError):  # parseaddr recurses once per nested "(" comment
        return None


def _envelope_recipient(envelope: Mapping[str, Any]) -> str:
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
        return [address for _, address in getaddresses([header_value[:_MAX_HEADER_CHARS]]) if address]
    except RecursionError:  # one level per nested "(" comment
        return []


def _recipient(envelope_to: str, to_headers: list[str]) -> str:
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


def _header_block(text: str) -> Message:
    return Parser(policy=_MIME_POLICY).parsestr(text.strip("\r\n") + "\n\n", headersonly=True)


def _header_text(message: Message, name: str) -> str:
    """A header's decoded value (encoded words, raw UTF-8), or its raw text if it cannot be parsed."""
    try:
        value = message.get(name)
    except Exception:
        return _raw_header(message, name)
    return "" if value is None else _unfold(str(value)).strip()


def _raw_header(message: Message, name: str) -> str:
    """The first `name` header exactly as written, unfolded."""
    raw = next((value for key, value in message.raw_items() if key.lower() == name), "")
    return _repair_surrogates(_unfold(str(raw))).strip()


def _best_body(text: str, html: str) -> str:
    """The text body, or the html one made readable when the email has no (non-blank) text."""
    plain = re.sub(r"\r\n?", "\n", text).strip()
    return plain if plain else html_to_text(html)


def _single_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def _bare_content_id(content_id: str | None) -> str | None:
    bare = (content_id or "").strip().strip("<>").strip()
    return bare or None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_object(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _lowercase_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    lowered: dict[str, Any] = {}
    for key, value in mapping.items():
        lowered.setdefault(str(key).lower(), value)
    return lowered


def _decode_text(data: bytes, charset: str | None) -> str:
    """Bytes in the named charset; an unknown or non-text charset falls back to UTF-8."""
    name = (charset or "").strip().strip("\"'") or _DEFAULT_CHARSET
    try:
        codecs.lookup(name)
        return data.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode(_DEFAULT_CHARSET, errors="replace")


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _repair_surrogates(value: str) -> str:
    """Header text the parser read as ASCII: undecodable bytes are re-read as UTF-8."""
    try:
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeError:
        return value.encode("utf-8", errors="replace").decode("utf-8")


# --------------------------------------------------------------------------------------------
# HTML to text


_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
# How many line breaks a tag's start and end put around its content: paragraphs stand apart by a
# blank line, other blocks just start on their own line.
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"})
_BLOCK_TAGS = frozenset(
    {"div", "li", "tr", "ul", "ol", "dl", "dt", "dd", "pre", "hr", "section", "article", "header", "footer"}
)
_CELL_TAGS = frozenset({"td", "th"})


class _HtmlTextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._skipping = 0
        self._pending_breaks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping = 0  # an unclosed <head> must not swallow the body
        elif tag in _SKIPPED_TAGS:
            self._skipping += 1
        else:
            self._break_for(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIPPED_TAGS:
            self._break_for(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag != "br":
            self._break_for(tag)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        collapsed = re.sub(r"\s+", " ", data)
        if not collapsed.strip():
            # Indentation between tags is not content, unless it separates two words.
            if not self._pending_breaks and self._chunks:
                self._chunks.append(" ")
            return
        if self._pending_breaks and self._chunks:
            self._chunks.append("\n" * self._pending_breaks)
        self._pending_breaks = 0
        self._chunks.append(collapsed)

    def _break_for(self, tag: str) -> None:
        if tag == "br":
            self._pending_breaks += 1  # consecutive <br> make blank lines, as in a browser
        elif tag in _PARAGRAPH_TAGS:
            self._pending_breaks = max(self._pending_breaks, 2)
        elif tag in _BLOCK_TAGS:
            self._pending_breaks = max(self._pending_breaks, 1)
        elif tag in _CELL_TAGS and self._chunks:
            self._chunks.append(" ")

    def text(self) -> str:
        return "".join(self._chunks)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML email body."""
    if not html.strip():
        return ""
    extractor = _HtmlTextExtractor()
    try:
        extractor.feed(_defuse_markup(html))
        extractor.close()
        text = extractor.text()
    except Exception:
        # html.parser still asserts on some malformed declarations; a crude strip is enough.
        text = unescape(re.sub(r"<[^>]*>", " ", html))
    return _tidy_lines(text)


def _defuse_markup(html: str) -> str:
    """The markup html.parser reads in linear time, with the same visible text.

    For every "<" it cannot close, html.parser (as shipped with Python 3.11) searches to the end
    of the document again, so 400 kB of "<!--" takes minutes. Comments, declarations and
    processing instructions show no text and are removed; a "<" that no ">" closes before the
    next "<" is text and is escaped.
    """
    return _UNCLOSED_OR_DECLARATION.sub(_defused_construct, _without_comments(html))


_UNCLOSED_OR_DECLARATION = re.compile(r"<(?:([!?][^<>]*)>|(?=[^<>]*(?:<|$)))")


def _defused_construct(match: re.Match[str]) -> str:
    return "" if match.group(1) is not None else "&lt;"


def _without_comments(html: str) -> str:
    kept: list[str] = []
    position = 0
    while (start := html.find("<!--", position)) >= 0:
        kept.append(html[position:start])
        end = html.find("-->", start + 4)
        if end < 0:
            return "".join(kept)  # an unclosed comment hides the rest of the document
        position = end + 3
    kept.append(html[position:])
    return "".join(kept)


def _tidy_lines(text: str) -> str:
    lines = [re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------------------------
# Sending (v3 Mail Send)


DEFAULT_API_BASE_URL = "https://api.sendgrid.com"
SEND_TIMEOUT_SECONDS = 10.0
HUB_MESSAGE_ID_ARG = "hub_message_id"


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
