"""SendGrid Inbound Parse requests, built byte for byte the way SendGrid posts them.

Every builder returns `(body, content_type)`: the multipart/form-data body and the value of its
Content-Type header (SendGrid always uses the boundary `xYzZY`). Unit tests wrap them in a
WebhookRequest with `webhook_request`; end-to-end tests POST them with `request_headers`.

The email itself is described once by `InboundEmail` and rendered either as SendGrid's parsed
fields (`parsed_payload`) or as a full MIME message in the `email` field (`raw_payload`). Both
builders also accept InboundEmail's fields as keyword arguments:

    body, content_type = parsed_payload(html="<p>Hi</p>", text=None, attachments=[logo])
    body, content_type = raw_payload(InboundEmail(subject="Re: order"), omit={"envelope"})
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from chalicelib.channels.base import WebhookRequest

SENDGRID_BOUNDARY = "xYzZY"
SENDGRID_USER_AGENT = "SendGrid 1.0"
INBOUND_PATH = "/webhooks/sendgrid/inbound"
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "events" / "sendgrid"

DEFAULT_FROM = "Ada Lovelace <ada@example.com>"
DEFAULT_TO = "support@parse.example.com"
DEFAULT_SUBJECT = "Question about order 1042"
DEFAULT_TEXT = "Hello,\n\nmy order 1042 has not arrived yet. Can you check?\n\nAda\n"
DEFAULT_MESSAGE_ID = "<CAF=1042.ada@mail.example.com>"
DEFAULT_DATE = "Tue, 05 Mar 2024 09:15:00 +0000"

# A valid 1x1 PNG and a minimal PDF: small, real file signatures for attachment tests.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF_MINIMAL = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"
    content_id: str | None = None  # set for inline images referenced as cid: in the html


@dataclass(frozen=True)
class InboundEmail:
    """The email a customer sent, independent of how SendGrid posts it."""

    from_: str = DEFAULT_FROM
    to: str = DEFAULT_TO
    cc: str | None = None
    subject: str = DEFAULT_SUBJECT
    text: str | None = DEFAULT_TEXT
    html: str | None = None
    message_id: str | None = DEFAULT_MESSAGE_ID
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    date: str | None = DEFAULT_DATE
    attachments: Sequence[Attachment] = ()
    text_charset: str = "utf-8"
    html_charset: str = "utf-8"
    extra_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FormPart:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None


def multipart_form(parts: Iterable[FormPart], boundary: str = SENDGRID_BOUNDARY) -> tuple[bytes, str]:
    """A multipart/form-data body: CRLF line ends, one part per field, as SendGrid writes it."""
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        disposition = f'form-data; name="{_quoted(part.name)}"'
        if part.filename is not None:
            disposition += f'; filename="{_quoted(part.filename)}"'
        head = f"Content-Disposition: {disposition}\r\n"
        if part.content_type is not None:
            head += f"Content-Type: {part.content_type}\r\n"
        chunks += [delimiter, b"\r\n", head.encode("utf-8"), b"\r\n", part.value, b"\r\n"]
    chunks += [delimiter, b"--\r\n"]
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def parsed_payload(
    email: InboundEmail | None = None,
    *,
    headers: str | None = None,
    charsets: Mapping[str, str] | None = None,
    envelope_from: str | None = None,
    envelope_to: str | None = None,
    envelope: str | None = None,
    spam_check: bool = True,
    omit: Iterable[str] = (),
    extra_fields: Mapping[str, str | bytes] | None = None,
    boundary: str = SENDGRID_BOUNDARY,
    **email_fields: Any,
) -> tuple[bytes, str]:
    """SendGrid's default mode: the email split into fields, attachments as `attachmentN` files.

    `headers` replaces the generated raw header block; `charsets` adds or overrides entries of the
    reported `charsets` JSON without changing how the fields are encoded (the text and html
    fields are encoded with the email's text_charset and html_charset); `envelope` replaces the
    envelope JSON; `omit` leaves out fields by name (e.g. {"from", "envelope"} or "attachment2").
    """
    mail = _email(email, email_fields)
    reported = {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
    if mail.cc is not None:
        reported["cc"] = "UTF-8"
    if mail.html is not None:
        reported["html"] = mail.html_charset
    if mail.text is not None:
        reported["text"] = mail.text_charset
    reported.update(charsets or {})

    fields: list[FormPart] = [
        _text_part("headers", headers if headers is not None else header_block(mail)),
        _text_part("dkim", "{@example.com : pass}"),
    ]
    inline = {f"attachment{n}": a.content_id for n, a in enumerate(mail.attachments, 1) if a.content_id}
    if inline:
        fields.append(_text_part("content-ids", _json({cid: name for name, cid in inline.items()})))
    fields.append(_text_part("to", mail.to))
    if mail.cc is not None:
        fields.append(_text_part("cc", mail.cc))
    if mail.html is not None:
        fields.append(_text_part("html", mail.html, mail.html_charset))
    fields.append(_text_part("from", mail.from_))
    if mail.text is not None:
        fields.append(_text_part("text", mail.text, mail.text_charset))
    fields.append(_text_part("sender_ip", "203.0.113.25"))
    if spam_check:
        fields.append(_text_part("spam_report", _SPAM_REPORT))
    fields.append(_text_part("envelope", envelope or _envelope_json(mail, envelope_from, envelope_to)))
    fields.append(_text_part("attachments", str(len(mail.attachments))))
    fields.append(_text_part("subject", mail.subject))
    if spam_check:
        fields.append(_text_part("spam_score", "0.011"))
    if mail.attachments:
        fields.append(_text_part("attachment-info", _json(_attachment_info(mail.attachments))))
    fields.append(_text_part("charsets", _json(reported)))
    fields.append(_text_part("SPF", "pass"))
    fields += [
        FormPart(f"attachment{n}", a.content, filename=a.filename, content_type=a.content_type)
        for n, a in enumerate(mail.attachments, 1)
    ]
    return multipart_form(_finish(fields, omit, extra_fields), boundary)


def raw_payload(
    email: InboundEmail | bytes | None = None,
    *,
    envelope_from: str | None = None,
    envelope_to: str | None = None,
    envelope: str | None = None,
    spam_check: bool = True,
    omit: Iterable[str] = (),
    extra_fields: Mapping[str, str | bytes] | None = None,
    boundary: str = SENDGRID_BOUNDARY,
    **email_fields: Any,
) -> tuple[bytes, str]:
    """SendGrid's "Send Raw" mode: the full MIME message in the `email` field.

    Pass bytes as `email` to post an arbitrary (even malformed) message; the `to`, `from` and
    `subject` fields and the envelope then come from the default InboundEmail unless overridden.
    """
    if isinstance(email, bytes):
        raw, mail = email, _email(None, email_fields)
    else:
        mail = _email(email, email_fields)
        raw = mime_message(mail)
    fields = [
        _text_part("dkim", "{@example.com : pass}"),
        FormPart("email", raw),
        _text_part("to", mail.to),
        _text_part("from", mail.from_),
        _text_part("sender_ip", "203.0.113.25"),
    ]
    if spam_check:
        fields.append(_text_part("spam_report", _SPAM_REPORT))
    fields.append(_text_part("envelope", envelope or _envelope_json(mail, envelope_from, envelope_to)))
    fields.append(_text_part("subject", mail.subject))
    if spam_check:
        fields.append(_text_part("spam_score", "0.011"))
    fields.append(_text_part("charsets", _json({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"})))
    fields.append(_text_part("SPF", "pass"))
    return multipart_form(_finish(fields, omit, extra_fields), boundary)


def mime_message(email: InboundEmail | None = None, **email_fields: Any) -> bytes:
    """The email as its sender's client would transmit it (CRLF, deterministic boundaries)."""
    mail = _email(email, email_fields)
    message = EmailMessage()
    for name, value in _header_items(mail):
        message[name] = value
    if mail.text is not None:
        message.set_content(mail.text, charset=mail.text_charset)
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html", charset=mail.html_charset)
    elif mail.html is not None:
        message.set_content(mail.html, subtype="html", charset=mail.html_charset)
    else:
        message.set_content("", charset=mail.text_charset)
    for attachment in mail.attachments:
        _attach(message, attachment)
    for index, part in enumerate(p for p in message.walk() if p.is_multipart()):
        part.set_boundary(f"==omnihub-mime-{index}==")
    return message.as_bytes(policy=policy.SMTP)


def header_block(email: InboundEmail | None = None, **email_fields: Any) -> str:
    """The `headers` field of the parsed mode: the raw header block, one header a line."""
    mail = _email(email, email_fields)
    lines = [
        "Received: from mail.example.com (mail.example.com [203.0.113.25]) by mx.sendgrid.net "
        f"with ESMTPS id 4F2A1C0 for <{_address(mail.to)}>; {mail.date or DEFAULT_DATE}",
        *(f"{name}: {value}" for name, value in _header_items(mail)),
        'Content-Type: multipart/alternative; boundary="000000000000a1b2c3"',
    ]
    return "\n".join(lines) + "\n"


def webhook_request(
    body: bytes,
    content_type: str,
    *,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    path: str = INBOUND_PATH,
) -> WebhookRequest:
    """A WebhookRequest as app.py would build it, with the token in the query and/or Basic auth."""
    query = [("token", token)] if token is not None else []
    return WebhookRequest(
        method="POST",
        path=path,
        headers={k.lower(): v for k, v in request_headers(content_type, basic_auth=basic_auth).items()},
        body=body,
        query=query,
    )


def request_headers(content_type: str, *, basic_auth: tuple[str, str] | None = None) -> dict[str, str]:
    """HTTP headers SendGrid sends with the body (plus Basic credentials when configured)."""
    headers = {"Content-Type": content_type, "User-Agent": SENDGRID_USER_AGENT}
    if basic_auth is not None:
        headers["Authorization"] = basic_authorization(*basic_auth)
    return headers


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def sample_email_parsed() -> InboundEmail:
    """The email behind events/sendgrid/inbound_parsed.*: html with an inline logo and a PDF."""
    return InboundEmail(
        from_='"Ada Lovelace" <ada@example.com>',
        to="Support <support@parse.example.com>",
        subject="Invoice for order 1042",
        text="Hello,\n\nplease find the invoice attached. The logo is below.\n\nAda\n",
        html=(
            '<div dir="ltr"><p>Hello,</p><p>please find the invoice attached. The logo is below.</p>'
            '<img src="cid:ii_logo1042" alt="logo"><p>Ada</p></div>'
        ),
        attachments=(
            Attachment("logo.png", PNG_1X1, "image/png", content_id="ii_logo1042"),
            Attachment("invoice-1042.pdf", PDF_MINIMAL, "application/pdf"),
        ),
    )


def sample_email_raw() -> InboundEmail:
    """The email behind events/sendgrid/inbound_raw.*: a reply in a thread, with a PDF."""
    return InboundEmail(
        from_="Ada Lovelace <ada@example.com>",
        to="support@parse.example.com",
        subject="Re: Question about order 1042",
        text="Thanks, the parcel arrived today.\n\nAda\n",
        html="<p>Thanks, the parcel arrived today.</p><p>Ada</p>",
        message_id="<CAF=reply.1042.ada@mail.example.com>",
        in_reply_to="<hub.1042.1@parse.example.com>",
        references=("<CAF=1042.ada@mail.example.com>", "<hub.1042.1@parse.example.com>"),
        date="Wed, 06 Mar 2024 18:02:11 +0100",
        attachments=(Attachment("delivery-note.pdf", PDF_MINIMAL, "application/pdf"),),
    )


def load_sample(name: str, directory: Path = SAMPLES_DIR) -> tuple[bytes, str]:
    """(body, content_type) of a committed sample, e.g. load_sample("inbound_raw")."""
    body = (directory / f"{name}.multipart").read_bytes()
    return body, (directory / f"{name}.content-type").read_text().strip()


def write_samples(directory: Path = SAMPLES_DIR) -> list[Path]:
    """Write the events/sendgrid sample requests (body + sibling .content-type) and the .eml."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    samples = {
        "inbound_parsed": parsed_payload(sample_email_parsed()),
        "inbound_raw": raw_payload(sample_email_raw()),
    }
    for name, (body, content_type) in samples.items():
        written.append(directory / f"{name}.multipart")
        written[-1].write_bytes(body)
        written.append(directory / f"{name}.content-type")
        written[-1].write_text(content_type)  # no newline: the file is the header value
    written.append(directory / "inbound_raw.eml")
    written[-1].write_bytes(mime_message(sample_email_raw()))
    return written


# --- helpers -----------------------------------------------------------------------------------

_SPAM_REPORT = (
    'Spam detection software, running on the system "mx.sendgrid.net", has\n'
    "NOT identified this incoming email as spam.\n\n"
    "Content analysis details:   (0.0 points, 5.0 required)\n"
)


def _email(email: InboundEmail | None, overrides: Mapping[str, Any]) -> InboundEmail:
    return replace(email or InboundEmail(), **overrides)


def _text_part(name: str, value: str, charset: str = "utf-8") -> FormPart:
    return FormPart(name, value.encode(charset))


def _finish(
    fields: list[FormPart], omit: Iterable[str], extra_fields: Mapping[str, str | bytes] | None
) -> list[FormPart]:
    left_out = set(omit)
    kept = [part for part in fields if part.name not in left_out]
    for name, value in (extra_fields or {}).items():
        kept.append(FormPart(name, value if isinstance(value, bytes) else value.encode("utf-8")))
    return kept


def _header_items(mail: InboundEmail) -> list[tuple[str, str]]:
    items = [("MIME-Version", "1.0"), ("From", mail.from_)]
    if mail.date is not None:
        items.append(("Date", mail.date))
    if mail.message_id is not None:
        items.append(("Message-ID", mail.message_id))
    if mail.in_reply_to is not None:
        items.append(("In-Reply-To", mail.in_reply_to))
    if mail.references:
        items.append(("References", " ".join(mail.references)))
    items += [("Subject", mail.subject), ("To", mail.to)]
    if mail.cc is not None:
        items.append(("Cc", mail.cc))
    items += list(mail.extra_headers.items())
    return items


def _envelope_json(mail: InboundEmail, envelope_from: str | None, envelope_to: str | None) -> str:
    return _json({"to": [envelope_to or _address(mail.to)], "from": envelope_from or _address(mail.from_)})


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # SendGrid's JSON fields are compact


def _attachment_info(attachments: Sequence[Attachment]) -> dict[str, dict[str, str]]:
    info: dict[str, dict[str, str]] = {}
    for number, attachment in enumerate(attachments, 1):
        entry = {"filename": attachment.filename, "name": attachment.filename, "type": attachment.content_type}
        if attachment.content_id:
            entry["content-id"] = attachment.content_id
        info[f"attachment{number}"] = entry
    return info


def _attach(message: EmailMessage, attachment: Attachment) -> None:
    if attachment.content_type == "message/rfc822":
        # A forwarded email is embedded as a message (7bit/8bit), never base64-encoded.
        forwarded = message_from_bytes(attachment.content, policy=policy.SMTP)
        message.add_attachment(forwarded, filename=attachment.filename)
        return
    maintype, _, subtype = attachment.content_type.partition("/")
    options: dict[str, Any] = {"maintype": maintype, "subtype": subtype or "octet-stream"}
    options["filename"] = attachment.filename
    html_body = message.get_body(preferencelist=("html",))
    if attachment.content_id and html_body is not None:
        html_body.add_related(attachment.content, cid=f"<{attachment.content_id}>", **options)
        return
    if attachment.content_id:
        options.update(cid=f"<{attachment.content_id}>", disposition="inline")
    message.add_attachment(attachment.content, **options)


def _address(header_value: str) -> str:
    return parseaddr(header_value)[1] or header_value


def _quoted(value: str) -> str:
    # Browsers and SendGrid percent-encode the quote; raw UTF-8 is sent as is.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
