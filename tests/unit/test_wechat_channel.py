"""WeChat Official Account pushes: signed exactly as WeChat signs them, parsed into the hub's items,
and hostile XML refused before it can hurt the parser."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib.channels import wechat
from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.domain.identity import IdentityKind
from chalicelib.domain.messages import Channel, InboundMessage
from chalicelib.domain.webhook_items import BatchOutcome, ConsentChange, Skipped

EVENTS = Path(__file__).parents[2] / "events" / "wechat"
TOKEN = "omnihub-wechat-token-2024"
OPENID = "oXk2u5Ld9qTzR1wYb8NcVm3HjP0a"
ACCOUNT = "gh_3f2a9c1b7d4e"
NOW = 1714037059


@pytest.fixture(autouse=True)
def wechat_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_TOKEN", TOKEN)


def sign(timestamp: str, nonce: str, token: str = TOKEN) -> str:
    """WeChat's algorithm, written out independently of the module under test."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324


def push(body: bytes, timestamp: int = NOW, nonce: str = "486452656", **query: str) -> WebhookRequest:
    params = {"signature": sign(str(timestamp), nonce), "timestamp": str(timestamp), "nonce": nonce}
    params.update(openid=OPENID)
    params.update(query)
    return WebhookRequest(
        method="POST",
        path="/webhooks/wechat",
        headers={"content-type": "text/xml"},
        body=body,
        query=list(params.items()),
    )


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def parse_one(name_or_body: str | bytes) -> object:
    body = sample(name_or_body) if isinstance(name_or_body, str) else name_or_body
    request = push(body)
    wechat.verify(request, now=NOW)
    [item] = wechat.parse(request)
    return item


def message(name: str) -> InboundMessage:
    item = parse_one(name)
    assert isinstance(item, InboundMessage)
    return item


# --- Signature -------------------------------------------------------------------------------------


def test_signature_matches_the_worked_example_in_wechats_docs() -> None:
    # Message encryption guide, plaintext mode: Token "AAAAA", timestamp 1714037059, nonce 486452656.
    assert wechat.signature("AAAAA", "1714037059", "486452656") == "899cf89e464efb63f54ddac96b0a0a235f53aa78"


def test_a_signed_push_verifies() -> None:
    wechat.verify(push(b"<xml/>"), now=NOW)


def test_handshake_answers_echostr_when_signed() -> None:
    request = push(b"", echostr="8305999631672647420")
    assert wechat.handshake(request, now=NOW) == "8305999631672647420"


@pytest.mark.parametrize(
    "query",
    [
        {"signature": "0" * 40},  # forged
        {"signature": ""},  # missing
        {"signature": "签名" * 10},  # not even ASCII: refused, not a TypeError
        {"nonce": "486452657"},  # another nonce than the one signed
        {"timestamp": str(NOW + 1)},  # another timestamp than the one signed
    ],
)
def test_a_push_whose_signature_does_not_match_is_rejected(query: dict[str, str]) -> None:
    request = push(b"<xml/>")
    values = dict(request.query) | query
    forged = WebhookRequest(request.method, request.path, request.headers, request.body, list(values.items()))
    with pytest.raises(WebhookRejected):
        wechat.verify(forged, now=NOW)
    with pytest.raises(WebhookRejected):
        wechat.handshake(WebhookRequest("GET", forged.path, {}, b"", [*forged.query, ("echostr", "1")]), now=NOW)


def test_missing_query_parameters_are_rejected() -> None:
    with pytest.raises(WebhookRejected):
        wechat.verify(WebhookRequest("POST", "/webhooks/wechat", {}, b"<xml/>", []), now=NOW)


def test_a_signature_made_with_another_token_is_rejected() -> None:
    request = push(b"<xml/>")
    values = dict(request.query) | {"signature": sign(str(NOW), "486452656", token="someone-else")}
    with pytest.raises(WebhookRejected):
        wechat.verify(WebhookRequest("POST", request.path, {}, b"", list(values.items())), now=NOW)


def test_every_push_is_refused_while_the_token_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WECHAT_TOKEN")
    with pytest.raises(WebhookRejected, match="WECHAT_TOKEN"):
        wechat.verify(push(b"<xml/>"), now=NOW)
    with pytest.raises(WebhookRejected):
        wechat.handshake(push(b"", echostr="1"), now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_a_replayed_or_far_future_timestamp_is_rejected(skew: int) -> None:
    with pytest.raises(WebhookRejected, match="away from now"):
        wechat.verify(push(b"<xml/>", timestamp=NOW), now=NOW + skew)


@pytest.mark.parametrize("skew", [-300, -15, 0, 15, 300])
def test_wechats_retries_and_small_clock_drift_pass(skew: int) -> None:
    wechat.verify(push(b"<xml/>", timestamp=NOW), now=NOW + skew)


def test_a_signed_timestamp_that_is_not_a_number_is_rejected() -> None:
    params = {"signature": sign("soon", "1"), "timestamp": "soon", "nonce": "1"}
    request = WebhookRequest("POST", "/webhooks/wechat", {}, b"<xml/>", list(params.items()))
    with pytest.raises(WebhookRejected, match="not a number"):
        wechat.verify(request, now=NOW)


@pytest.mark.parametrize("echostr", ["", "x" * 300, "line\nbreak", "spaced out"])
def test_handshake_refuses_an_odd_echostr(echostr: str) -> None:
    with pytest.raises(MalformedPayload, match="echostr"):
        wechat.handshake(push(b"", echostr=echostr), now=NOW)


def test_the_acknowledgement_is_success() -> None:
    assert wechat.acknowledgement(BatchOutcome()) == "success"
    assert wechat.ACKNOWLEDGEMENT_TYPE == "text/plain; charset=utf-8"


# --- Messages ---------------------------------------------------------------------------------------


def test_text_message_keeps_cdata_text_verbatim_and_the_openid_identity() -> None:
    item = message("text.xml")

    assert item.provider == "wechat"
    assert item.channel is Channel.WECHAT
    assert item.provider_message_id == "24612837465903281"
    assert item.dedupe_key == "wechat:24612837465903281"
    assert item.sender.kind is IdentityKind.WECHAT
    assert item.sender.value == OPENID == item.sender_address
    assert item.recipient_address == ACCOUNT == item.provider_account
    assert item.body == "你好，我的订单还没到 <order #1042> & 谢谢"
    assert abs((item.received_at - datetime.now(UTC)).total_seconds()) < 60  # arrival, like every channel
    assert item.media == []


def test_text_from_an_article_ignores_the_article_fields() -> None:
    item = message("text_from_article.xml")
    assert item.body == "Is this offer still valid?"
    assert item.provider_message_id == "24612837465903399"


def test_image_keeps_the_picture_url_and_media_id() -> None:
    item = message("image.xml")
    [media] = item.media
    assert media.url == "http://mmbiz.qpic.cn/mmbiz_jpg/Q3auHgzwzM5kq9Xd0vAhP2c/0"
    assert media.content_id == "Hx3b8nU2kQ9vR7yT1mZ4cW6pL0sE5dF8gJ2hK4aN7qB9"
    assert media.content_type == "image"
    assert item.body == ""


def test_voice_uses_the_speech_recognition_as_body() -> None:
    item = message("voice.xml")
    [media] = item.media
    assert item.body == "请问什么时候发货"
    assert media.content_type == "audio/amr"
    assert media.content_id == "Vq8pL2xN5cR1tY7mK3wZ9bH4dF6gJ0sA2eU8iO5rT1yW"
    assert media.url is None  # fetched by MediaId with an access token, not by URL


def test_voice_with_the_msgid_spelling_of_the_docs_table_is_accepted() -> None:
    body = sample("voice.xml").replace(b"<MsgId>", b"<MsgID>").replace(b"</MsgId>", b"</MsgID>")
    assert isinstance(parse_one(body), InboundMessage)


@pytest.mark.parametrize(("name", "media_id"), [("video.xml", "Vd4k"), ("shortvideo.xml", "Sv2n")])
def test_video_and_short_video_keep_the_media_id(name: str, media_id: str) -> None:
    [media] = message(name).media
    assert media.content_type == "video"
    assert media.content_id is not None and media.content_id.startswith(media_id)


def test_location_becomes_readable_text() -> None:
    assert message("location.xml").body == "广州市海珠区新港中路397号: 23.134521,113.358803"


def test_link_becomes_title_description_and_url() -> None:
    assert message("link.xml").body == (
        "Return policy\nHow to send an item back\nhttps://mp.weixin.qq.com/s/Xb3kR9nT2pL6cV0wM4zQ"
    )


def test_compatibility_mode_is_read_from_its_plaintext_fields() -> None:
    item = message("compatibility_mode.xml")
    assert item.body == "sent while the account was in compatibility mode"


def test_an_unknown_message_type_is_skipped() -> None:
    body = sample("text.xml").replace(b"[text]", b"[miniprogrampage]")
    item = parse_one(body)
    assert isinstance(item, Skipped) and item.kind == "message:miniprogrampage"


# --- Events -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "opted_out"),
    [("event_subscribe.xml", False), ("event_subscribe_qrscene.xml", False), ("event_unsubscribe.xml", True)],
)
def test_follow_and_unfollow_are_consent_changes(name: str, opted_out: bool) -> None:
    item = parse_one(name)
    assert isinstance(item, ConsentChange)
    assert item.channel is Channel.WECHAT
    assert item.sender.kind is IdentityKind.WECHAT and item.sender.value == OPENID
    assert item.opted_out is opted_out
    assert item.occurred_at.tzinfo is not None and item.occurred_at.year == 2024  # CreateTime


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("event_scan.xml", "event:SCAN"),
        ("event_location.xml", "event:LOCATION"),
        ("event_click.xml", "event:CLICK"),
        ("event_view.xml", "event:VIEW"),
        ("event_templatesendjobfinish.xml", "event:TEMPLATESENDJOBFINISH"),
        ("event_pic_sysphoto.xml", "event:pic_sysphoto"),
    ],
)
def test_other_events_are_skipped(name: str, kind: str) -> None:
    item = parse_one(name)
    assert isinstance(item, Skipped)
    assert item.kind == kind


def test_an_unknown_event_is_skipped() -> None:
    body = sample("event_click.xml").replace(b"[CLICK]", b"[SOMETHING_NEW]")
    item = parse_one(body)
    assert isinstance(item, Skipped) and item.kind == "event:SOMETHING_NEW"


# --- Hostile and malformed bodies ------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>gh_1</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh_1</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"""


def hostile(body: bytes, match: str) -> None:
    request = push(body)
    wechat.verify(request, now=NOW)  # authentic: the body alone is the problem
    with pytest.raises(MalformedPayload, match=match):
        wechat.parse(request)


def test_billion_laughs_is_refused_before_parsing() -> None:
    hostile(BILLION_LAUGHS, "DOCTYPE")


def test_the_parser_itself_refuses_declarations_the_byte_check_might_miss() -> None:
    class Disguised(bytes):  # defeats the fast byte check, so expat's own handlers must refuse
        def upper(self) -> bytes:
            return b""

    with pytest.raises(MalformedPayload, match="refused"):
        wechat.read_xml(Disguised(BILLION_LAUGHS))
    with pytest.raises(MalformedPayload, match="refused"):
        wechat.read_xml(Disguised(XXE))


def test_external_entities_are_refused() -> None:
    hostile(XXE, "DOCTYPE")


def test_a_doctype_in_lower_case_or_utf16_is_refused_too() -> None:
    hostile(BILLION_LAUGHS.replace(b"DOCTYPE", b"doctype").replace(b"ENTITY", b"entity"), "DOCTYPE")
    utf16 = BILLION_LAUGHS.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"').decode().encode("utf-16")
    hostile(utf16, "refused|not")


def test_an_undeclared_entity_reference_is_malformed() -> None:
    hostile(sample("text.xml").replace(b"<Content>", b"<Content>&xxe;"), "not well-formed")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"ToUserName": "gh_1", "MsgType": "text"}', "not well-formed"),
        (b"<xml><ToUserName>gh_1</ToUserName>", "not well-formed"),
        (b"<html><body>hi</body></html>", "root element"),
        (b"\xff\xfe<\x00x\x00", "UTF-8"),
        (b"<xml>" + b"<a>" * 20 + b"</a>" * 20 + b"</xml>", "nested too deeply"),
        (b"<xml>" + b"<a/>" * 600 + b"</xml>", "too many elements"),
    ],
)
def test_bodies_that_are_not_a_wechat_xml_document_are_malformed(body: bytes, match: str) -> None:
    hostile(body, match)


def test_a_huge_body_is_refused_without_parsing() -> None:
    body = sample("text.xml").replace(b"<Content>", b"<Content>" + b"A" * (wechat.MAX_BODY_BYTES + 1))
    hostile(body, "larger than")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b"<MsgType><![CDATA[text]]></MsgType>", b"", "MsgType"),
        (b"<FromUserName><![CDATA[oXk2u5Ld9qTzR1wYb8NcVm3HjP0a]]></FromUserName>", b"", "FromUserName"),
        (b"oXk2u5Ld9qTzR1wYb8NcVm3HjP0a", b"not an openid", "FromUserName"),
        (b"oXk2u5Ld9qTzR1wYb8NcVm3HjP0a", b"o" * 200, "FromUserName"),
        (b"<MsgId>24612837465903281</MsgId>", b"", "MsgId"),
        (b"24612837465903281", b"246128374659032811234567890", "MsgId"),
        (b"24612837465903281", b"12ab", "MsgId"),
        (b"gh_3f2a9c1b7d4e", b"g" * 100, "ToUserName"),
    ],
)
def test_missing_or_odd_fields_are_malformed(old: bytes, new: bytes, match: str) -> None:
    body = sample("text.xml")
    assert old in body
    hostile(body.replace(old, new), match)


def test_an_event_without_its_event_type_is_malformed() -> None:
    hostile(sample("event_subscribe.xml").replace(b"<Event><![CDATA[subscribe]]></Event>", b""), "Event")


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"<CreateTime>1714037600</CreateTime>", b""), (b"1714037600", b"-1"), (b"1714037600", b"9" * 20)],
)
def test_an_unfollow_with_an_odd_create_time_is_malformed(old: bytes, new: bytes) -> None:
    hostile(sample("event_unsubscribe.xml").replace(old, new), "CreateTime")


def test_an_unfollow_without_an_openid_is_malformed() -> None:
    body = sample("event_unsubscribe.xml").replace(b"oXk2u5Ld9qTzR1wYb8NcVm3HjP0a", b"")
    hostile(body, "FromUserName")


@pytest.mark.parametrize(("old", "new"), [(b"23.134521", b"north"), (b"113.358803", b"181.5")])
def test_a_location_with_odd_coordinates_is_malformed(old: bytes, new: bytes) -> None:
    hostile(sample("location.xml").replace(old, new), "coordinate")


def test_safe_mode_bodies_are_refused_with_what_to_change() -> None:
    hostile(sample("safe_mode.xml"), "plaintext")
    request = push(sample("safe_mode.xml"), encrypt_type="aes", msg_signature="0" * 40)
    with pytest.raises(MalformedPayload, match="safe mode"):
        wechat.parse(request)


# --- Sending helpers ----------------------------------------------------------------------------------------


def test_media_urls_are_sent_as_links_after_the_text() -> None:
    assert wechat.message_text("Here you go", ("https://cdn.example.com/a.pdf",)) == (
        "Here you go\n\nhttps://cdn.example.com/a.pdf"
    )
    assert wechat.message_text("", ("https://a", "https://b")) == "https://a\nhttps://b"
    assert wechat.message_text("just text", ()) == "just text"


def test_missing_settings_names_what_a_send_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings

    monkeypatch.delenv("WECHAT_APP_ID", raising=False)
    monkeypatch.delenv("WECHAT_APP_SECRET", raising=False)
    settings.cache_clear()
    try:
        assert wechat.missing_settings("wechat") == ["WECHAT_APP_ID", "WECHAT_APP_SECRET"]
        monkeypatch.setenv("WECHAT_APP_ID", "wx0123456789abcdef")
        monkeypatch.setenv("WECHAT_APP_SECRET", "s3cret")
        settings.cache_clear()
        assert wechat.missing_settings("wechat") == []
    finally:
        settings.cache_clear()


def test_a_send_without_an_access_token_cache_is_refused_before_calling_wechat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib.channels.base import Outgoing
    from chalicelib.domain.replies import ProviderUnavailable

    # Given a configured account whose API nothing could reach
    monkeypatch.setenv("WECHAT_APP_ID", "wx0123456789abcdef")
    monkeypatch.setenv("WECHAT_APP_SECRET", "s3cret")
    monkeypatch.setenv("WECHAT_API_BASE_URL", "http://127.0.0.1:9")
    outgoing = Outgoing(channel="wechat", recipient=OPENID, body="Hello", hub_message_id="msg_1")
    # When it is asked to send without the shared token cache
    with pytest.raises(ProviderUnavailable) as caught:
        wechat.send(outgoing)
    # Then nothing is sent, and the refusal says why
    assert (caught.value.provider, caught.value.reason) == ("wechat", "no access-token cache was given")
