"""The chat apps on the spine: customers found by any channel identity over the REST API, and
handoff links into Telegram, Messenger and LINE whose code arrives outside the message text."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from chalice.test import Client

from chalicelib.domain.identity import user_id_identity
from chalicelib.domain.messages import Channel, InboundMessage
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_ingest import sms
from tests.integration.test_links import created_link

API = {"Authorization": "Bearer test-api-key"}


def chat_message(channel: Channel, user_id: str, event_id: str, body: str = "", **extra: Any) -> InboundMessage:
    return InboundMessage(
        provider={"telegram": "telegram", "line": "line"}.get(channel.value, "meta"),
        provider_message_id=event_id,
        channel=channel,
        sender=user_id_identity(channel.value, user_id),
        sender_address=user_id,
        recipient_address="the-business",
        body=body,
        **extra,
    )


def lookup(client: Client, query: str) -> tuple[int, Any]:
    response = client.http.get(f"/v1/customers?{query}", headers=API)
    return response.status_code, json.loads(response.body)


def test_a_customer_is_found_by_any_channel_and_user_id(hub: Hub) -> None:
    import app
    from chalicelib.services.ingest import ingest

    stored = ingest(chat_message(Channel.TELEGRAM, "987654321", "tg-1", "hello"))
    ingest(chat_message(Channel.MESSENGER, "PSID-42", "mid.1", "hi from messenger"))

    with Client(app.app) as client:
        status, found = lookup(client, "channel=telegram&address=987654321")
        assert status == 200 and [c["id"] for c in found["data"]] == [stored.customer_id]
        assert lookup(client, "channel=Telegram&address=%20987654321%20")[1]["data"][0]["id"] == stored.customer_id
        assert lookup(client, "channel=messenger&address=PSID-42")[1]["data"][0]["id"] != stored.customer_id
        assert lookup(client, "channel=line&address=U" + "0" * 32) == (200, {"data": []})
        for query, fragment in (
            ("channel=telegram", "go together"),
            ("address=1", "go together"),
            ("channel=fax&address=1", "unknown channel"),
            ("channel=telegram&address=" + "9" * 200, "not a telegram user id"),
            ("phone=%2B15017122661&channel=telegram&address=1", "exactly one"),
        ):
            status, error = lookup(client, query)
            assert status == 400 and fragment in error["error"]["message"], (query, error)


@pytest.mark.parametrize(
    ("target", "setting", "value", "expected_link"),
    [
        ("telegram", "TELEGRAM_BOT_USERNAME", "AcmeHelpBot", "https://t.me/AcmeHelpBot?start=LINK-"),
        ("messenger", "META_PAGE_USERNAME", "acme", "https://m.me/acme?ref=LINK-"),
        ("line", "LINE_BASIC_ID", "@acme123", "https://line.me/R/oaMessage/%40acme123/?"),
    ],
)
def test_a_chat_app_link_brings_the_new_identity_into_the_same_thread(
    hub_with_providers: Hub,
    sandbox: ProviderSandbox,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    setting: str,
    value: str,
    expected_link: str,
) -> None:
    from chalicelib.config import settings
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    monkeypatch.setenv(setting, value)
    settings.cache_clear()
    first = ingest(sms(f"SMchat-{target}", body="Can we talk on another app?"))

    status, created = created_link(first.conversation_id, LinkTarget(target))

    assert status == 201, created
    [invitation] = [r["request"]["Body"] for r in sandbox.records() if r["provider"] == "twilio"]
    assert expected_link in invitation
    url = invitation[invitation.index("https://") :].split()[0]
    carried = {
        "telegram": lambda: parse_qs(urlparse(url).query)["start"][0],
        "messenger": lambda: parse_qs(urlparse(url).query)["ref"][0],
        "line": lambda: unquote(urlparse(url).query),
    }[target]()
    assert created["code"] in carried

    channel = Channel(target)
    user_id = {"telegram": "5550001", "messenger": "PSID-77", "line": "U" + "b" * 32}[target]
    if target == "line":  # the pre-filled text is sent as the customer's first message
        arrival = chat_message(channel, user_id, "evt-1", carried)
    else:  # the code comes as the /start payload or the m.me referral, beside the text
        arrival = chat_message(channel, user_id, "evt-1", "/start" if target == "telegram" else "", link_code=carried)
    joined = ingest(arrival)

    assert joined.customer_id == first.customer_id and joined.notice is None
    assert customers.find_customer(channel=target, address=user_id).id == first.customer_id
    messages, _ = customers.list_messages(first.conversation_id, 50, None)
    assert [m.direction.value for m in messages] == ["inbound", "outbound", "event", "inbound"]
    assert f"continued on {target}" in messages[2].body
    assert ingest(arrival).duplicate


def test_a_link_to_a_chat_app_the_business_has_not_set_up_is_refused(hub_with_providers: Hub) -> None:
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMchat-none", body="hi"))
    status, refused = created_link(first.conversation_id, LinkTarget.TELEGRAM)
    assert (status, refused["error"]["code"]) == (400, "invalid_request")
    assert "no telegram address" in refused["error"]["message"]
