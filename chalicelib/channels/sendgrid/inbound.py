"""Inbound Parse: the shared secret that authenticates a post, the multipart/form-data it arrives
as, and the default ("parsed") mode, in which SendGrid has split the email into fields.

Inbound Parse requests are not signed, so the route is protected by a shared secret that the
SendGrid URL carries as HTTP Basic credentials or as a `token` query parameter.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.errors import CloseBoundaryNotFoundDefect
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value
from typing import Any

from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.channels.sendgrid.message import (
    bare_content_id,
    best_body,
    envelope_recipient,
    inbound_message,
    json_object,
    lowercase_keys,
    recipient_of,
    repair_surrogates,
    sender_of,
    single_line,
    text_or_none,
    unfold,
)
from chalicelib.channels.sendgrid.mime import decode_text, header_block, raw_mode_message
from chalicelib.domain.messages import InboundMessage, Media

TOKEN_QUERY_PARAMETER = "token"  # noqa: S105 - a parameter name, not a secret


# --- Verification ----------------------------------------------------------------------------


def verify_token(request: WebhookRequest, token: str) -> None:
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


# --- Parsing ---------------------------------------------------------------------------------


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
        return repair_surrogates(unfold(value))


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
    charsets = lowercase_keys(json_object(_field_text(fields, "charsets")))
    text_of = _FieldReader(fields, charsets)
    envelope = json_object(text_of("envelope"))
    headers = header_block(text_of("headers"))

    sender_address, display_name = sender_of(text_of("from"), envelope)
    recipient = recipient_of(envelope_recipient(envelope), [text_of("to")])
    subject = single_line(text_of("subject"))
    body = best_body(text_of("text"), text_of("html"))
    return inbound_message(
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
    return decode_text(field.data, charset or field.charset)


def _parsed_mode_media(fields: Mapping[str, _FormField], text_of: _FieldReader) -> list[Media]:
    """Attachment metadata from `attachment-info`, `content-ids` and the `attachmentN` files."""
    info = lowercase_keys(json_object(text_of("attachment-info")))
    content_ids = json_object(text_of("content-ids"))
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
        filename=text_or_none(info.get("filename"))
        or text_or_none(info.get("name"))
        or (field.filename if field else None),
        content_type=text_or_none(info.get("type")) or (field.content_type if field else None),
        size=len(field.data) if field is not None else None,
        content_id=bare_content_id(text_or_none(info.get("content-id")) or content_id),
    )


# --- raw mode: the form fields around the MIME message (mime.py reads the message) ------------


def _parse_raw_mode(fields: Mapping[str, _FormField]) -> InboundMessage:
    raw = fields["email"].data
    if not raw.strip():
        raise MalformedPayload("'email' field is empty")
    charsets = lowercase_keys(json_object(_field_text(fields, "charsets")))
    return raw_mode_message(raw, _FieldReader(fields, charsets))
