"""SendGrid Inbound Parse: verification of the shared token and parsing of both posting modes."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.channels import sendgrid
from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest
from chalicelib.channels.sendgrid import html_to_text, parse_inbound, verify_token
from chalicelib.domain.identity import IdentityKind
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage
from chalicelib.domain.replies import ProviderRejected
from chalicelib.domain.webhook_items import BatchOutcome
from local.sandbox import ProviderSandbox
from tests.support.sendgrid_payloads import (
    PDF_MINIMAL,
    PNG_1X1,
    SENDGRID_BOUNDARY,
    Attachment,
    FormPart,
    InboundEmail,
    basic_authorization,
    load_sample,
    mime_message,
    multipart_form,
    parsed_payload,
    raw_payload,
    sample_email_parsed,
    sample_email_raw,
    webhook_request,
)

TOKEN = "s3cret-inbound-token"


def parse(payload: tuple[bytes, str]) -> InboundMessage:
    return parse_inbound(webhook_request(*payload))


def request_with(headers: dict[str, str], query: list[tuple[str, str]] | None = None) -> WebhookRequest:
    body, content_type = parsed_payload()
    return WebhookRequest(
        method="POST",
        path="/webhooks/sendgrid/inbound",
        headers={"content-type": content_type, **headers},
        body=body,
        query=query or [],
    )


def assert_malformed(payload: tuple[bytes, str]) -> str:
    with pytest.raises(MalformedPayload) as caught:
        parse(payload)
    return str(caught.value)


def parse_or_malformed(body: bytes, content_type: str) -> InboundMessage | None:
    """The only two outcomes any input may have."""
    try:
        return parse_inbound(webhook_request(body, content_type))
    except MalformedPayload:
        return None


# --------------------------------------------------------------------------------------------
# verify


class TestVerify:
    def test_accepts_matching_query_token(self) -> None:
        # Given the token in the query string, as in https://hub/inbound?token=...
        request = webhook_request(*parsed_payload(), token=TOKEN)
        # When / Then: no rejection
        assert verify_token(request, TOKEN) is None

    @pytest.mark.parametrize("user", ["sendgrid", "", "any user name"])
    def test_accepts_matching_basic_password_with_any_user(self, user: str) -> None:
        # Given https://user:token@hub/inbound, which SendGrid sends as Basic credentials
        request = webhook_request(*parsed_payload(), basic_auth=(user, TOKEN))
        # When / Then
        assert verify_token(request, TOKEN) is None

    def test_accepts_password_containing_colons(self) -> None:
        # Given a password with colons: only the first colon separates the user name
        request = webhook_request(*parsed_payload(), basic_auth=("u", "a:b:c"))
        # When / Then
        assert verify_token(request, "a:b:c") is None

    def test_accepts_lowercase_basic_scheme(self) -> None:
        # Given the scheme written in lower case
        credentials = base64.b64encode(f"u:{TOKEN}".encode()).decode()
        request = request_with({"authorization": f"basic {credentials}"})
        # When / Then
        assert verify_token(request, TOKEN) is None

    def test_accepts_non_ascii_token(self) -> None:
        # Given a configured token with non-ASCII characters, presented in the query
        request = webhook_request(*parsed_payload(), token="clé-secrète")
        # When / Then: compared as UTF-8 bytes
        assert verify_token(request, "clé-secrète") is None

    def test_rejects_everything_when_token_is_not_configured(self) -> None:
        # Given no configured token, even a request presenting an empty one
        request = webhook_request(*parsed_payload(), token="")
        # When
        with pytest.raises(WebhookRejected) as caught:
            verify_token(request, "")
        # Then: fail closed
        assert caught.value.reason == "SENDGRID_INBOUND_TOKEN is not configured"

    def test_rejects_request_without_token(self) -> None:
        # Given neither Basic credentials nor a token parameter
        request = webhook_request(*parsed_payload())
        # When
        with pytest.raises(WebhookRejected) as caught:
            verify_token(request, TOKEN)
        # Then
        assert caught.value.reason == "no token presented"

    @pytest.mark.parametrize(
        "request_factory",
        [
            lambda: webhook_request(*parsed_payload(), token="wrong-token"),
            lambda: webhook_request(*parsed_payload(), basic_auth=("sendgrid", "wrong-token")),
            lambda: webhook_request(*parsed_payload(), token=TOKEN[:-1]),
            lambda: webhook_request(*parsed_payload(), token=TOKEN + "x"),
            lambda: webhook_request(*parsed_payload(), basic_auth=("sendgrid", "")),
        ],
        ids=["query", "basic", "prefix", "longer", "empty-password"],
    )
    def test_rejects_wrong_token_without_revealing_either_value(
        self, request_factory: Callable[[], WebhookRequest]
    ) -> None:
        # Given a presented token that differs from the configured one
        request = request_factory()
        # When
        with pytest.raises(WebhookRejected) as caught:
            verify_token(request, TOKEN)
        # Then: a human reason that contains neither secret nor presented value
        assert caught.value.reason == "token does not match"
        assert TOKEN not in str(caught.value) and "wrong-token" not in str(caught.value)

    @pytest.mark.parametrize(
        "authorization",
        [
            "Basic !!!not-base64!!!",
            "Basic " + base64.b64encode(b"no-colon-here").decode(),
            "Basic",
            "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()[:-2],
        ],
        ids=["bad-base64", "no-colon", "empty", "truncated"],
    )
    def test_malformed_basic_header_is_a_rejection(self, authorization: str) -> None:
        # Given a Basic header that cannot be decoded to user:password
        request = request_with({"authorization": authorization})
        # When
        with pytest.raises(WebhookRejected) as caught:
            verify_token(request, TOKEN)
        # Then: a rejection, never another exception, and no echo of the header
        assert caught.value.reason == "Authorization header is not valid Basic credentials"

    def test_other_authorization_schemes_are_left_to_the_query_token(self) -> None:
        # Given a Bearer header (e.g. from a proxy) and the right token in the query
        accepted = request_with({"authorization": "Bearer abc"}, query=[("token", TOKEN)])
        refused = request_with({"authorization": "Bearer abc"})
        # When / Then
        assert verify_token(accepted, TOKEN) is None
        with pytest.raises(WebhookRejected, match=r"^no token presented$"):
            verify_token(refused, TOKEN)

    def test_either_presented_token_may_match(self) -> None:
        # Given a wrong Basic password but the right query token
        request = webhook_request(*parsed_payload(), token=TOKEN, basic_auth=("u", "nope"))
        # When / Then
        assert verify_token(request, TOKEN) is None

    def test_unencodable_query_token_is_rejected_not_raised(self) -> None:
        # Given a query value with a lone surrogate, as a lenient URL decoder may produce
        request = request_with({}, query=[("token", "\udcff" + TOKEN)])
        # When / Then
        with pytest.raises(WebhookRejected, match=r"^token does not match$"):
            verify_token(request, TOKEN)

    def test_basic_authorization_helper_builds_the_standard_header(self) -> None:
        assert basic_authorization("user", "pass") == "Basic dXNlcjpwYXNz"


# --------------------------------------------------------------------------------------------
# Parsed (default) mode


class TestParsedMode:
    def test_parses_a_plain_email(self) -> None:
        # Given SendGrid's default post of a text email
        payload = parsed_payload()
        # When
        message = parse(payload)
        # Then
        assert message.provider == "sendgrid" == sendgrid.PROVIDER
        assert message.channel is Channel.EMAIL
        assert message.sender.kind is IdentityKind.EMAIL
        assert message.sender.value == "ada@example.com"
        assert message.sender_address == "ada@example.com"
        assert message.recipient_address == "support@parse.example.com"
        assert message.profile_name == "Ada Lovelace"
        assert message.subject == "Question about order 1042"
        assert message.body == "Hello,\n\nmy order 1042 has not arrived yet. Can you check?\n\nAda"
        assert message.media == []
        assert message.provider_message_id == "CAF=1042.ada@mail.example.com"
        assert message.dedupe_key == "sendgrid:CAF=1042.ada@mail.example.com"
        assert message.email is not None
        assert message.email.message_id == "<CAF=1042.ada@mail.example.com>"

    def test_reads_threading_headers_from_the_headers_field(self) -> None:
        # Given a reply whose References header is folded over two lines
        headers = (
            "Received: by mx.sendgrid.net with SMTP id abc\n"
            "From: Ada <ada@example.com>\n"
            "Message-ID:  <reply-2@mail.example.com> \n"
            "In-Reply-To: <hub-1@parse.example.com>\n"
            "References: <root-0@mail.example.com>\n"
            "\t<hub-1@parse.example.com>\n"
            "Subject: Re: order\n"
        )
        # When
        message = parse(parsed_payload(headers=headers))
        # Then
        assert message.email is not None
        assert message.email.message_id == "<reply-2@mail.example.com>"
        assert message.email.in_reply_to == "<hub-1@parse.example.com>"
        assert message.email.references == ["<root-0@mail.example.com>", "<hub-1@parse.example.com>"]
        assert message.provider_message_id == "reply-2@mail.example.com"

    def test_threading_from_the_builder_headers(self) -> None:
        # Given an email built with In-Reply-To and References
        email = InboundEmail(in_reply_to="<p@x.example>", references=("<a@x.example>", "<p@x.example>"))
        # When
        message = parse(parsed_payload(email))
        # Then
        assert message.email is not None
        assert (message.email.in_reply_to, message.email.references) == (
            "<p@x.example>",
            ["<a@x.example>", "<p@x.example>"],
        )

    def test_decodes_iso_8859_1_html_named_in_charsets(self) -> None:
        # Given an html-only email whose html field is Latin-1, as the charsets field says
        payload = parsed_payload(
            text=None, html="<p>Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e</p>", html_charset="iso-8859-1"
        )
        assert b"Caf\xe9" in payload[0]
        # When
        message = parse(payload)
        # Then
        assert message.body == "Café crème brûlée"

    def test_decodes_each_field_with_its_own_charset(self) -> None:
        # Given a Windows-1252 text field next to a UTF-8 html field
        payload = parsed_payload(text="Price: 20 \u20ac", text_charset="windows-1252", html="<p>ignored \u2713</p>")
        # When
        message = parse(payload)
        # Then
        assert message.body == "Price: 20 €"

    def test_unknown_charset_falls_back_to_utf8(self) -> None:
        # Given a charset name Python does not know, for a UTF-8 text field
        payload = parsed_payload(text="na\u00efve r\u00e9sum\u00e9", charsets={"text": "x-unknown-charset"})
        # When
        message = parse(payload)
        # Then
        assert message.body == "naïve résumé"

    @pytest.mark.parametrize("charset", ["base64", "rot13", "idna", "utf-8\x00", ""])
    def test_non_text_or_odd_charsets_fall_back_without_raising(self, charset: str) -> None:
        # Given Latin-1 bytes declared with a charset that is not a usable text encoding
        payload = parsed_payload(text="caf\u00e9", text_charset="latin-1", charsets={"text": charset})
        # When
        message = parse(payload)
        # Then: decoded as UTF-8 with a replacement character
        assert message.body == "caf\ufffd"

    def test_html_only_email_is_converted_to_text(self) -> None:
        # Given an email with no text part
        html = (
            "<html><head><title>Ignored title</title><style>p { color: red }</style></head>"
            "<body><h1>Order&nbsp;1042</h1><p>Hello &amp; welcome,<br>second line</p>"
            "<script>alert('x')</script><ul><li>first</li><li>second</li></ul>"
            "<div>Thanks,</div><div>Ada &lt;ada@example.com&gt;</div>\n\n\n\n</body></html>"
        )
        # When
        message = parse(parsed_payload(text=None, html=html))
        # Then
        assert message.body == (
            "Order 1042\n\nHello & welcome,\nsecond line\n\nfirst\nsecond\nThanks,\nAda <ada@example.com>"
        )

    def test_blank_text_part_falls_back_to_html(self) -> None:
        # Given a text field that only holds whitespace
        message = parse(parsed_payload(text=" \r\n \r\n", html="<p>Real content</p>"))
        # Then
        assert message.body == "Real content"

    def test_text_is_preferred_over_html_and_crlf_normalised(self) -> None:
        message = parse(parsed_payload(text="Line one\r\nLine two\r\n", html="<p>HTML version</p>"))
        assert message.body == "Line one\nLine two"

    def test_attachments_are_metadata_only(self) -> None:
        # Given two attachments, the first an inline image
        email = InboundEmail(
            html='<p>See <img src="cid:ii_logo"></p>',
            attachments=(
                Attachment("logo.png", PNG_1X1, "image/png", content_id="ii_logo"),
                Attachment("invoice.pdf", PDF_MINIMAL, "application/pdf"),
            ),
        )
        # When
        message = parse(parsed_payload(email))
        # Then
        assert [media.model_dump() for media in message.media] == [
            {
                "url": None,
                "content_type": "image/png",
                "filename": "logo.png",
                "size": len(PNG_1X1),
                "content_id": "ii_logo",
            },
            {
                "url": None,
                "content_type": "application/pdf",
                "filename": "invoice.pdf",
                "size": len(PDF_MINIMAL),
                "content_id": None,
            },
        ]
        assert len(PNG_1X1) == 70 and len(PDF_MINIMAL) == 69

    def test_binary_attachment_size_is_exact(self) -> None:
        # Given an attachment with every byte value, CRs, LFs and something like a boundary
        content = bytes(range(256)) * 4 + b"\r\n\r\n--xYzZ\r\r\n\n"
        # When
        message = parse(parsed_payload(attachments=[Attachment("blob.bin", content)]))
        # Then
        assert message.media[0].size == len(content) == 1038
        assert message.media[0].content_type == "application/octet-stream"

    def test_content_id_from_content_ids_map_when_attachment_info_lacks_it(self) -> None:
        # Given attachment-info without content-id but a content-ids map naming the attachment
        payload = parsed_payload(
            attachments=[Attachment("logo.png", PNG_1X1, "image/png")],
            omit={"attachment-info"},
            extra_fields={
                "attachment-info": '{"attachment1":{"filename":"logo.png","type":"image/png"}}',
                "content-ids": '{"ii_abc123":"attachment1"}',
            },
        )
        # When
        message = parse(payload)
        # Then
        assert message.media[0].content_id == "ii_abc123"

    def test_attachment_listed_but_not_posted_has_no_size(self) -> None:
        # Given attachment-info naming a file SendGrid did not post
        payload = parsed_payload(
            attachments=[Attachment("a.pdf", PDF_MINIMAL, "application/pdf")], omit={"attachment1"}
        )
        # When
        message = parse(payload)
        # Then
        assert [(m.filename, m.content_type, m.size) for m in message.media] == [("a.pdf", "application/pdf", None)]

    def test_attachment_without_attachment_info_uses_the_file_part(self) -> None:
        # Given files but no attachment-info field
        payload = parsed_payload(
            attachments=[
                Attachment("a.pdf", PDF_MINIMAL, "application/pdf"),
                Attachment("b.txt", b"hi\n", "text/plain"),
            ],
            omit={"attachment-info"},
        )
        # When
        message = parse(payload)
        # Then
        assert [(m.filename, m.content_type, m.size) for m in message.media] == [
            ("a.pdf", "application/pdf", 69),
            ("b.txt", "text/plain", 3),
        ]

    def test_attachments_are_ordered_by_number(self) -> None:
        # Given eleven attachments (attachment10 must not sort before attachment2)
        files = [Attachment(f"f{n}.txt", b"x" * n, "text/plain") for n in range(1, 12)]
        # When
        message = parse(parsed_payload(attachments=files))
        # Then
        assert [m.filename for m in message.media] == [f"f{n}.txt" for n in range(1, 12)]
        assert [m.size for m in message.media] == list(range(1, 12))

    def test_non_ascii_attachment_filename_sent_as_raw_utf8(self) -> None:
        # Given a filename in raw UTF-8 in Content-Disposition and no attachment-info
        payload = parsed_payload(
            attachments=[Attachment("r\u00e9sum\u00e9 \u2713.pdf", PDF_MINIMAL, "application/pdf")],
            omit={"attachment-info"},
        )
        # When
        message = parse(payload)
        # Then
        assert message.media[0].filename == "résumé ✓.pdf"

    def test_forwarded_email_attachment_keeps_its_exact_size(self) -> None:
        # Given a message/rfc822 file part, which must not be parsed as a nested message
        forwarded = mime_message(subject="Original message")
        # When
        message = parse(parsed_payload(attachments=[Attachment("fwd.eml", forwarded, "message/rfc822")]))
        # Then
        assert (message.media[0].content_type, message.media[0].size) == ("message/rfc822", len(forwarded))

    def test_missing_message_id_gives_a_stable_content_hash(self) -> None:
        # Given the same email without Message-ID posted twice (a SendGrid retry)
        first = parse(parsed_payload(message_id=None))
        retry = parse(parsed_payload(message_id=None))
        # When a different body, or a different Date, is posted
        other_body = parse(parsed_payload(message_id=None, text="Another question"))
        other_date = parse(parsed_payload(message_id=None, date="Wed, 06 Mar 2024 09:15:00 +0000"))
        # Then
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.provider_message_id)
        assert first.provider_message_id == retry.provider_message_id
        assert other_body.provider_message_id != first.provider_message_id
        assert other_date.provider_message_id != first.provider_message_id
        assert first.email is not None and first.email.message_id is None

    def test_missing_headers_field_still_parses_with_a_hash_id(self) -> None:
        message = parse(parsed_payload(omit={"headers"}))
        assert message.provider_message_id.startswith("sha256:")
        assert message.email is not None and message.email.references == []

    def test_oversized_message_id_is_replaced_by_its_digest(self) -> None:
        message = parse(parsed_payload(message_id="<" + "m" * 400 + "@example.com>"))
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", message.provider_message_id)
        assert message.email is not None and message.email.message_id == "<" + "m" * 400 + "@example.com>"

    @pytest.mark.parametrize(
        ("from_", "address", "profile_name"),
        [
            ('"Lovelace, Ada" <Ada@Example.COM>', "ada@example.com", "Lovelace, Ada"),
            ("Ada Lovelace <ada@example.com>", "ada@example.com", "Ada Lovelace"),
            ("ada@example.com", "ada@example.com", None),
            ("<ada@example.com>", "ada@example.com", None),
            ("Sender Name ada@example.com", "ada@example.com", "Sender Name"),
            ("Jos\u00e9 P\u00e9rez <jose@example.com>", "jose@example.com", "José Pérez"),
        ],
    )
    def test_sender_address_and_display_name(self, from_: str, address: str, profile_name: str | None) -> None:
        # Given a From field in one of the forms mail clients write
        message = parse(parsed_payload(from_=from_, envelope_from="bounce@mailer.example.net"))
        # Then: the header address wins over the envelope's return path
        assert (message.sender_address, message.profile_name) == (address, profile_name)
        assert message.sender.value == address

    def test_missing_from_falls_back_to_the_envelope(self) -> None:
        # Given no from field
        message = parse(parsed_payload(omit={"from"}, envelope_from="Bounce@Mailer.Example.net"))
        # Then
        assert (message.sender_address, message.profile_name) == ("bounce@mailer.example.net", None)

    def test_unparseable_from_falls_back_to_the_envelope(self) -> None:
        message = parse(parsed_payload(from_="undisclosed-recipients:;", envelope_from="ada@example.com"))
        assert message.sender_address == "ada@example.com"

    def test_recipient_is_the_envelope_address(self) -> None:
        # Given a To header naming a list, while SendGrid received the email for one address
        message = parse(parsed_payload(to="Team <team@example.com>", envelope_to="Support@Parse.Example.com"))
        # Then
        assert message.recipient_address == "support@parse.example.com"

    def test_recipient_falls_back_to_the_first_to_address(self) -> None:
        # Given no envelope
        message = parse(
            parsed_payload(to='"Support, Desk" <Support@Parse.Example.com>, other@example.com', omit={"envelope"})
        )
        # Then
        assert message.recipient_address == "support@parse.example.com"

    def test_unparseable_recipient_is_kept_as_written(self) -> None:
        message = parse(parsed_payload(to="not an address", omit={"envelope"}))
        assert message.recipient_address == "not an address"

    def test_invalid_json_fields_are_ignored(self) -> None:
        # Given broken charsets, attachment-info and envelope JSON
        payload = parsed_payload(
            charsets={"text": "x"},
            envelope="{not json",
            omit={"charsets"},
            extra_fields={"charsets": "[" * 100_000, "content-ids": "null"},
        )
        # When
        message = parse(payload)
        # Then: parsed from the other fields
        assert (message.sender_address, message.recipient_address) == ("ada@example.com", "support@parse.example.com")

    def test_missing_subject_is_none(self) -> None:
        assert parse(parsed_payload(omit={"subject"})).subject is None

    def test_folded_subject_is_one_line(self) -> None:
        assert parse(parsed_payload(subject="Order\r\n 1042\n")).subject == "Order 1042"


# --------------------------------------------------------------------------------------------
# Raw mode


class TestRawMode:
    def test_parses_a_raw_reply_with_attachment(self) -> None:
        # Given SendGrid's raw post of a reply with a PDF
        message = parse(raw_payload(sample_email_raw()))
        # Then
        assert message.sender_address == "ada@example.com"
        assert message.profile_name == "Ada Lovelace"
        assert message.recipient_address == "support@parse.example.com"
        assert message.subject == "Re: Question about order 1042"
        assert message.body == "Thanks, the parcel arrived today.\n\nAda"
        assert message.provider_message_id == "CAF=reply.1042.ada@mail.example.com"
        assert message.email is not None
        assert message.email.model_dump() == {
            "message_id": "<CAF=reply.1042.ada@mail.example.com>",
            "in_reply_to": "<hub.1042.1@parse.example.com>",
            "references": ["<CAF=1042.ada@mail.example.com>", "<hub.1042.1@parse.example.com>"],
        }
        assert [(m.filename, m.content_type, m.size) for m in message.media] == [
            ("delivery-note.pdf", "application/pdf", len(PDF_MINIMAL))
        ]

    def test_encoded_words_in_headers_are_decoded(self) -> None:
        # Given RFC 2047 encoded display name and subject
        raw = (
            b"From: =?utf-8?q?Jos=C3=A9_P=C3=A9rez?= <Jose@Example.com>\r\n"
            b"To: support@parse.example.com\r\n"
            b"Subject: =?iso-8859-1?q?D=E9j=E0_vu?=\r\n"
            b"Message-ID: <ew@example.com>\r\n\r\nBody\r\n"
        )
        # When
        message = parse(raw_payload(raw))
        # Then
        assert (message.sender_address, message.profile_name, message.subject) == (
            "jose@example.com",
            "José Pérez",
            "Déjà vu",
        )

    def test_raw_utf8_headers_are_read(self) -> None:
        raw = "From: Zoë <zoe@example.com>\r\nSubject: Ça va?\r\n\r\nhi\r\n".encode()
        message = parse(raw_payload(raw))
        assert (message.profile_name, message.subject) == ("Zoë", "Ça va?")

    def test_non_utf8_8bit_body_is_decoded_with_its_charset(self) -> None:
        # Given a Latin-1 body sent 8bit (not UTF-8 bytes)
        raw = (
            b"From: ada@example.com\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me\r\n"
        )
        # When
        message = parse(raw_payload(raw))
        # Then
        assert message.body == "Café crème"

    def test_quoted_printable_iso_8859_1_from_builder(self) -> None:
        message = parse(raw_payload(text="r\u00e9sum\u00e9", text_charset="iso-8859-1"))
        assert message.body == "résumé"

    def test_unknown_body_charset_falls_back_to_utf8(self) -> None:
        raw = b"From: ada@example.com\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nna\xc3\xafve \xff\r\n"
        assert parse(raw_payload(raw)).body == "naïve \ufffd"

    def test_html_only_raw_email_is_converted(self) -> None:
        message = parse(raw_payload(text=None, html="<p>Hello</p><p>World &amp; co<br>bye</p>"))
        assert message.body == "Hello\n\nWorld & co\nbye"

    def test_inline_image_and_attachment_metadata(self) -> None:
        # Given html with an inline image (multipart/related) and a text attachment
        email = InboundEmail(
            html='<p><img src="cid:logo1"></p>',
            attachments=(
                Attachment("logo.png", PNG_1X1, "image/png", content_id="logo1"),
                Attachment("notes.txt", b"line 1\nline 2\n", "text/plain"),
            ),
        )
        # When
        message = parse(raw_payload(email))
        # Then
        assert [media.model_dump() for media in message.media] == [
            {"url": None, "content_type": "image/png", "filename": "logo.png", "size": 70, "content_id": "logo1"},
            {"url": None, "content_type": "text/plain", "filename": "notes.txt", "size": 14, "content_id": None},
        ]
        # and the text body is still the text part, not the attachment
        assert message.body == "Hello,\n\nmy order 1042 has not arrived yet. Can you check?\n\nAda"

    def test_single_part_file_email_is_its_own_attachment(self) -> None:
        # Given an email whose only part is a PDF (as scanners send)
        raw = (
            b"From: scanner@example.com\r\nContent-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.encodebytes(PDF_MINIMAL)
        )
        # When
        message = parse(raw_payload(raw))
        # Then
        assert message.body == ""
        assert [(m.filename, m.content_type, m.size) for m in message.media] == [
            ("scan.pdf", "application/pdf", len(PDF_MINIMAL))
        ]

    def test_forwarded_message_attachment_size(self) -> None:
        forwarded = mime_message(subject="Original")
        message = parse(raw_payload(attachments=[Attachment("fwd.eml", forwarded, "message/rfc822")]))
        assert [(m.content_type, m.filename, m.size) for m in message.media] == [
            ("message/rfc822", "fwd.eml", len(forwarded))
        ]

    def test_envelope_recipient_wins_then_to_header(self) -> None:
        # Given a To header naming a list and an envelope naming the parse address
        with_envelope = parse(raw_payload(to="Team <team@example.com>", envelope_to="support@parse.example.com"))
        # When the envelope is missing
        without_envelope = parse(raw_payload(to="Team <Team@Example.com>", omit={"envelope"}))
        # Then
        assert with_envelope.recipient_address == "support@parse.example.com"
        assert without_envelope.recipient_address == "team@example.com"

    def test_sender_falls_back_to_from_field_then_envelope(self) -> None:
        # Given a MIME message without From
        raw = b"To: support@parse.example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        # When
        from_field = parse(raw_payload(raw))
        from_envelope = parse(raw_payload(raw, omit={"from"}, envelope_from="bounce@example.net"))
        # Then
        assert (from_field.sender_address, from_field.profile_name) == ("ada@example.com", "Ada Lovelace")
        assert (from_envelope.sender_address, from_envelope.profile_name) == ("bounce@example.net", None)

    def test_missing_message_id_hash_is_stable_and_body_sensitive(self) -> None:
        first = parse(raw_payload(message_id=None))
        retry = parse(raw_payload(message_id=None))
        other = parse(raw_payload(message_id=None, text="Different body"))
        assert first.provider_message_id == retry.provider_message_id
        assert first.provider_message_id != other.provider_message_id
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", first.provider_message_id)

    def test_message_id_without_brackets(self) -> None:
        raw = b"From: ada@example.com\r\nMessage-ID: bare-id@example.com\r\n\r\nbody\r\n"
        message = parse(raw_payload(raw))
        assert message.provider_message_id == "bare-id@example.com"
        assert message.email is not None and message.email.message_id == "bare-id@example.com"

    def test_multipart_without_its_boundary_still_yields_the_sender(self) -> None:
        # Given a multipart message whose declared boundary never appears
        raw = b"From: ada@example.com\r\nContent-Type: multipart/mixed; boundary=nowhere\r\n\r\njust text\r\n"
        # When
        message = parse(raw_payload(raw))
        # Then: no body can be found, but the email is not lost
        assert (message.sender_address, message.body) == ("ada@example.com", "")

    def test_headerless_garbage_uses_the_form_fields(self) -> None:
        message = parse(raw_payload(b"\xff\xfe not a MIME message"))
        assert (message.sender_address, message.subject) == ("ada@example.com", "Question about order 1042")

    def test_empty_email_field_is_malformed(self) -> None:
        assert assert_malformed(raw_payload(b"  \r\n")) == "'email' field is empty"


# --------------------------------------------------------------------------------------------
# Malformed requests


class TestMalformed:
    @pytest.mark.parametrize(
        "content_type",
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=xYzZY",
        ],
    )
    def test_content_type_must_be_multipart_form_data_with_boundary(self, content_type: str) -> None:
        body, _ = parsed_payload()
        assert assert_malformed((body, content_type)) == "Content-Type must be multipart/form-data with a boundary"

    def test_wrong_boundary(self) -> None:
        body, _ = parsed_payload()
        message = assert_malformed((body, "multipart/form-data; boundary=other"))
        assert message == "multipart body does not contain the boundary declared in Content-Type"

    def test_truncated_body(self) -> None:
        body, content_type = parsed_payload()
        message = assert_malformed((body[: len(body) // 2], content_type))
        assert message == "multipart body is truncated: its closing boundary is missing"

    def test_no_from_and_no_envelope(self) -> None:
        message = assert_malformed(parsed_payload(omit={"from", "envelope"}))
        assert "multipart body has no 'from' field" in message

    def test_unparseable_from_and_no_envelope(self) -> None:
        message = assert_malformed(parsed_payload(from_="nobody", omit={"envelope"}))
        assert message == "'from' field is not an email address and the envelope has no sender"

    def test_no_recipient(self) -> None:
        message = assert_malformed(parsed_payload(omit={"to", "envelope"}))
        assert message == "multipart body has no recipient: no envelope 'to' and no 'to' field"

    def test_form_without_named_fields(self) -> None:
        body = b"--xYzZY\r\nContent-Type: text/plain\r\n\r\nanonymous\r\n--xYzZY--\r\n"
        message = assert_malformed((body, "multipart/form-data; boundary=xYzZY"))
        assert message == "multipart body has no named form fields"

    def test_line_breaks_in_content_type_cannot_inject_headers(self) -> None:
        # Given a Content-Type value smuggling a second header into the synthetic MIME header
        body, _ = parsed_payload()
        content_type = "multipart/form-data; boundary=xYzZY\r\nContent-Type: text/plain"
        # When / Then: the line break is only whitespace inside the boundary parameter
        message = assert_malformed((body, content_type))
        assert message == "multipart body does not contain the boundary declared in Content-Type"

    def test_random_bytes_only_ever_raise_malformed_payload(self) -> None:
        rng = random.Random(20240305)
        for _ in range(300):
            body = rng.randbytes(rng.randrange(0, 3000))
            assert parse_or_malformed(body, f"multipart/form-data; boundary={SENDGRID_BOUNDARY}") is None

    @pytest.mark.parametrize("builder", [parsed_payload, raw_payload], ids=["parsed", "raw"])
    def test_every_truncation_and_mutation_is_handled(self, builder: Callable[..., tuple[bytes, str]]) -> None:
        # Given a realistic payload, cut at many points and with bytes flipped
        body, content_type = builder(sample_email_parsed() if builder is parsed_payload else sample_email_raw())
        rng = random.Random(7)
        for cut in range(0, len(body), 37):
            parse_or_malformed(body[:cut], content_type)
        for _ in range(300):
            mutated = bytearray(body)
            for _ in range(rng.randrange(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            parse_or_malformed(bytes(mutated), content_type)

    def test_hostile_mime_only_ever_raises_malformed_payload(self) -> None:
        # Given raw emails mutated with MIME syntax fragments
        fragments = [
            b"\r\n",
            b"--==omnihub-mime-0==\r\n",
            b"Content-Type: multipart/mixed; boundary=q\r\n",
            b"Content-Type: message/rfc822\r\n\r\n",
            b"=?utf-8?b?!!",
            b'charset="x-bogus"',
            b"Content-Transfer-Encoding: base64\r\n",
            b"\xff",
            b"Message-ID: <<<>\r\n",
            b"Content-Disposition: attachment; filename*=utf-8''%ff%fe\r\n",
            b'From: "\r\n',
            b"<![foo",
        ]
        source = mime_message(sample_email_parsed())
        rng = random.Random(11)
        for _ in range(300):
            mutated = bytearray(source)
            for _ in range(rng.randrange(1, 6)):
                position = rng.randrange(len(mutated) + 1)
                mutated[position:position] = rng.choice(fragments)
            parse_or_malformed(*raw_payload(bytes(mutated)))

    def test_deeply_nested_mime_is_malformed(self) -> None:
        nesting = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level) for level in range(3000)
        )
        raw = b"From: ada@example.com\r\n" + nesting + b"\r\nx\r\n"
        assert assert_malformed(raw_payload(raw)).startswith("email could not be parsed")

    def test_huge_header_lines_are_handled_quickly(self) -> None:
        # Given header values that make the stdlib header parser quadratic or recursive
        cases = [
            multipart_form([FormPart("x" * 1_000_000, b"v"), FormPart("from", b"a@example.com")]),
            parsed_payload(subject="s" * 1_000_000, message_id="<" + "m" * 1_000_000 + ">"),
            parsed_payload(references=[f"<r{n}@example.com>" for n in range(50_000)]),
            raw_payload(b"From: a@example.com\r\nSubject: " + b"=?utf-8?q?a?= " * 50_000 + b"\r\n\r\nbody\r\n"),
            raw_payload(b"From: " + b"(" * 50_000 + b"a@example.com\r\n\r\nbody\r\n"),
            raw_payload(b"From: a@example.com\r\nContent-Type: text/plain" + b"; a=b" * 50_000 + b"\r\n\r\nx\r\n"),
            parsed_payload(text=None, html="<!--" * 100_000),
        ]
        for body, content_type in cases:
            started = time.monotonic()
            parse_or_malformed(body, content_type)
            assert time.monotonic() - started < 5

    def test_references_beyond_the_header_parser_limit_are_all_kept(self) -> None:
        references = [f"<r{n}@example.com>" for n in range(2_000)]
        message = parse(raw_payload(references=references))
        assert message.email is not None and message.email.references == references


# --------------------------------------------------------------------------------------------
# HTML to text


class TestHtmlToText:
    @pytest.mark.parametrize(
        ("html", "text"),
        [
            ("Hello<br>World", "Hello\nWorld"),
            ("a<br><br><br><br>b", "a\n\nb"),
            ("<p>One</p>\n   <p>Two &lt;3 &#233; &eacute;</p>", "One\n\nTwo <3 é é"),
            ("<b>bold</b> <i>italic</i>", "bold italic"),
            ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>after", "a b\nc\n\nafter"),
            ("<head><title>t</title><body>unclosed head", "unclosed head"),
            ("x < y and y > z", "x < y and y > z"),
            ("tail <b", "tail <b"),
            ("<!DOCTYPE html><!--[if mso]><p>mso</p><![endif]--><p>shown</p><?php x ?>", "shown"),
            ("text <!-- never closed <p>hidden</p>", "text"),
            ("<![foo bar]>x", "x"),
            ("<![foo bar <p>x", "<![foo bar\n\nx"),
            ("", ""),
            ("   ", ""),
        ],
    )
    def test_converts(self, html: str, text: str) -> None:
        assert html_to_text(html) == text


# --------------------------------------------------------------------------------------------
# Committed samples


class TestSamples:
    def test_parsed_sample(self) -> None:
        message = parse(load_sample("inbound_parsed"))
        assert (message.sender_address, message.profile_name, message.recipient_address) == (
            "ada@example.com",
            "Ada Lovelace",
            "support@parse.example.com",
        )
        assert message.subject == "Invoice for order 1042"
        assert message.body == "Hello,\n\nplease find the invoice attached. The logo is below.\n\nAda"
        assert [(m.filename, m.size, m.content_id) for m in message.media] == [
            ("logo.png", 70, "ii_logo1042"),
            ("invoice-1042.pdf", 69, None),
        ]

    def test_raw_sample(self) -> None:
        message = parse(load_sample("inbound_raw"))
        assert message.provider_message_id == "CAF=reply.1042.ada@mail.example.com"
        assert message.email is not None and message.email.in_reply_to == "<hub.1042.1@parse.example.com>"

    def test_samples_are_what_the_builders_produce(self) -> None:
        # Regenerate with: python -c "from tests.support.sendgrid_payloads import write_samples; write_samples()"
        assert load_sample("inbound_parsed") == parsed_payload(sample_email_parsed())
        assert load_sample("inbound_raw") == raw_payload(sample_email_raw())
        assert load_sample("inbound_raw")[0].count(mime_message(sample_email_raw())) == 1


# --------------------------------------------------------------------------------------------
# The channel contract (channels/registry.py)

SENDGRID_KEY = "SG.contract-test-key"
CONFIGURED_FROM = "hello@shop.example.com"
SENDER_SETTINGS = ("SENDGRID_API_KEY", "SENDGRID_FROM_EMAIL", "UNSUBSCRIBE_SECRET")


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No SendGrid setting from the environment the tests run in."""
    from chalicelib.config import settings

    for name in (*SENDER_SETTINGS, "SENDGRID_INBOUND_TOKEN", "SENDGRID_FROM_NAME", "SENDGRID_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_PARAMETER", raising=False)
    settings.cache_clear()
    yield monkeypatch
    settings.cache_clear()


class TestContract:
    def test_verify_reads_the_configured_inbound_token(self, clean_settings: pytest.MonkeyPatch) -> None:
        # Given SENDGRID_INBOUND_TOKEN in the settings
        clean_settings.setenv("SENDGRID_INBOUND_TOKEN", TOKEN)
        # When / Then: the right token passes, a wrong one is refused
        assert sendgrid.verify(webhook_request(*parsed_payload(), token=TOKEN)) is None
        with pytest.raises(WebhookRejected, match=r"^token does not match$"):
            sendgrid.verify(webhook_request(*parsed_payload(), token="wrong-token"))

    def test_verify_refuses_everything_while_the_token_is_unset(self, clean_settings: pytest.MonkeyPatch) -> None:
        with pytest.raises(WebhookRejected, match=r"^SENDGRID_INBOUND_TOKEN is not configured$"):
            sendgrid.verify(webhook_request(*parsed_payload(), token=""))

    def test_parse_is_the_one_inbound_email(self) -> None:
        request = webhook_request(*parsed_payload())
        [message] = sendgrid.parse(request)
        expected = parse_inbound(request)
        assert message.model_dump(exclude={"received_at"}) == expected.model_dump(exclude={"received_at"})

    @pytest.mark.parametrize(
        ("outcome", "body"),
        [
            (BatchOutcome(stored=["msg_01"]), {"status": "stored", "message_id": "msg_01"}),
            (BatchOutcome(stored=["msg_01"], duplicates=1), {"status": "duplicate", "message_id": "msg_01"}),
        ],
        ids=["stored", "duplicate"],
    )
    def test_acknowledgement_is_the_json_the_route_answers(self, outcome: BatchOutcome, body: dict) -> None:
        text = sendgrid.acknowledgement(outcome)
        assert json.loads(text) == body
        assert text == json.dumps(body, separators=(",", ":"))  # as Chalice serialised the route's dict
        assert sendgrid.ACKNOWLEDGEMENT_TYPE == "application/json"

    def test_missing_settings_names_every_unset_sender_setting(self, clean_settings: pytest.MonkeyPatch) -> None:
        assert sendgrid.missing_settings("email") == list(SENDER_SETTINGS)

    @pytest.mark.parametrize("unset", SENDER_SETTINGS)
    def test_missing_settings_names_just_the_one_unset(self, clean_settings: pytest.MonkeyPatch, unset: str) -> None:
        for name in SENDER_SETTINGS:
            if name != unset:
                clean_settings.setenv(name, "configured")
        assert sendgrid.missing_settings("email") == [unset]


@pytest.fixture
def mail_api(clean_settings: pytest.MonkeyPatch) -> Iterator[ProviderSandbox]:
    """The loopback SendGrid (local/sandbox.py) as the configured Mail Send API."""
    with ProviderSandbox(
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="unused",
        sendgrid_api_key=SENDGRID_KEY,
        simulate_status_callbacks=False,
    ) as sandbox:
        clean_settings.setenv("SENDGRID_API_KEY", SENDGRID_KEY)
        clean_settings.setenv("SENDGRID_FROM_EMAIL", CONFIGURED_FROM)
        clean_settings.setenv("SENDGRID_FROM_NAME", "Shop Support")
        clean_settings.setenv("SENDGRID_API_BASE_URL", sandbox.url)
        yield sandbox


def email(**overrides: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "channel": Channel.EMAIL.value,
        "recipient": "ada@example.com",
        "recipient_name": "Ada Lovelace",
        "subject": "Re: Question about order 1042",
        "body": "It ships today.\n\n--\nUnsubscribe: https://hub.example.com/u/abc",
        "hub_message_id": "msg_01HV",
        "in_reply_to": "<CAF=1042.ada@mail.example.com>",
        "references": ("<CAF=1041.ada@mail.example.com>", "<CAF=1042.ada@mail.example.com>"),
        "headers": {"List-Unsubscribe": "<https://hub.example.com/u/abc>"},
        **overrides,
    }
    return Outgoing(**fields)


class TestSend:
    def test_sends_from_the_address_the_customer_wrote_to(self, mail_api: ProviderSandbox) -> None:
        # Given an outgoing email from the business address the customer wrote to
        sent = sendgrid.send(email(sender="orders@shop.example.com"))
        # Then SendGrid got exactly one mail from that address, and its id came back
        [record] = [r for r in mail_api.records() if r["provider"] == "sendgrid"]
        assert record["request"]["from"] == {"email": "orders@shop.example.com", "name": "Shop Support"}
        assert (sent.provider, sent.provider_message_id) == ("sendgrid", record["id"])
        assert (sent.status, sent.sender_address, sent.recipient_address) == (
            DeliveryStatus.ACCEPTED,
            "orders@shop.example.com",
            "ada@example.com",
        )

    def test_sends_from_the_configured_address_otherwise(self, mail_api: ProviderSandbox) -> None:
        sent = sendgrid.send(email(), tokens=None)
        [record] = mail_api.records()
        assert record["request"]["from"] == {"email": CONFIGURED_FROM, "name": "Shop Support"}
        assert sent.sender_address == CONFIGURED_FROM

    def test_the_mail_carries_what_the_outgoing_message_says(self, mail_api: ProviderSandbox) -> None:
        sendgrid.send(email())
        [record] = mail_api.records()
        assert record["request"] == {
            "personalizations": [{"to": [{"email": "ada@example.com", "name": "Ada Lovelace"}]}],
            "from": {"email": CONFIGURED_FROM, "name": "Shop Support"},
            "subject": "Re: Question about order 1042",
            "content": [
                {"type": "text/plain", "value": "It ships today.\n\n--\nUnsubscribe: https://hub.example.com/u/abc"}
            ],
            "headers": {
                "List-Unsubscribe": "<https://hub.example.com/u/abc>",
                "In-Reply-To": "<CAF=1042.ada@mail.example.com>",
                "References": "<CAF=1041.ada@mail.example.com> <CAF=1042.ada@mail.example.com>",
            },
            "custom_args": {sendgrid.HUB_MESSAGE_ID_ARG: "msg_01HV"},
        }

    def test_no_from_name_is_sent_when_none_is_configured(
        self, mail_api: ProviderSandbox, clean_settings: pytest.MonkeyPatch
    ) -> None:
        clean_settings.setenv("SENDGRID_FROM_NAME", "")
        sendgrid.send(email(recipient_name=None, in_reply_to=None, references=(), headers={}))
        [record] = mail_api.records()
        assert record["request"]["from"] == {"email": CONFIGURED_FROM}
        assert record["request"]["personalizations"] == [{"to": [{"email": "ada@example.com"}]}]
        assert "headers" not in record["request"]

    def test_a_refused_key_is_a_provider_rejection(
        self, mail_api: ProviderSandbox, clean_settings: pytest.MonkeyPatch
    ) -> None:
        clean_settings.setenv("SENDGRID_API_KEY", "SG.wrong")
        with pytest.raises(ProviderRejected) as caught:
            sendgrid.send(email())
        assert (caught.value.provider, caught.value.code, caught.value.http_status) == ("sendgrid", "401", 401)
        assert mail_api.records() == []
