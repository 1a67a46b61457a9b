"""WeChat end to end against the AWS emulator: pushes through the real route (chalice's test client),
agent replies through services.replies to the WeChat emulator over HTTP, with the access token
shared through DynamoDB."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from local.chat_sandbox.wechat import WeChatEmulator
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.support.chat_sandbox import serving

EVENTS = Path(__file__).parents[2] / "events" / "wechat"
TOKEN = "integration-wechat-token"
APP_ID = "wx5f3a9c1b7d4e2a60"
APP_SECRET = "integration-wechat-app-secret"
OPENID = "oXk2u5Ld9qTzR1wYb8NcVm3HjP0a"
AGENT = "grace"


@dataclass
class WeChatHub:
    hub: Hub
    emulator: WeChatEmulator
    sandbox: ProviderSandbox


@pytest.fixture(scope="module")
def wechat_sandbox() -> Iterator[tuple[ProviderSandbox, WeChatEmulator]]:
    emulator = WeChatEmulator(app_id=APP_ID, app_secret=APP_SECRET)
    with serving(emulator) as sandbox:
        yield sandbox, emulator


@pytest.fixture
def wechat(
    hub: Hub, wechat_sandbox: tuple[ProviderSandbox, WeChatEmulator], monkeypatch: pytest.MonkeyPatch
) -> WeChatHub:
    from chalicelib.config import settings
    from chalicelib.domain.agents import AgentProfile
    from chalicelib.services import agents

    sandbox, emulator = wechat_sandbox
    sandbox.clear()
    emulator.reset()
    for name, value in {
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_APP_SECRET": APP_SECRET,
        "WECHAT_API_BASE_URL": sandbox.url_for("wechat"),
        "PROVIDER_TIMEOUT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    agents.put_agent(AGENT, AgentProfile(name="Grace Hopper"))
    return WeChatHub(hub, emulator, sandbox)


# --- Helpers ------------------------------------------------------------------------------------------


def signed_query(nonce: str = "1320542187", timestamp: int | None = None, **extra: str) -> str:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hashlib.sha1("".join(sorted([TOKEN, stamp, nonce])).encode()).hexdigest()  # noqa: S324
    return urlencode({"signature": signature, "timestamp": stamp, "nonce": nonce, "openid": OPENID, **extra})


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def post(body: bytes, query: str | None = None) -> Any:
    from chalice.test import Client

    import app

    with Client(app.app) as client:
        return client.http.post(
            f"/webhooks/wechat?{query or signed_query()}", headers={"Content-Type": "text/xml"}, body=body
        )


def get(query: str) -> Any:
    from chalice.test import Client

    import app

    with Client(app.app) as client:
        return client.http.get(f"/webhooks/wechat?{query}")


def error_of(response: Any) -> dict[str, str]:
    return json.loads(response.body)["error"]


def customer_by_openid() -> Any:
    from chalicelib.services import customers

    return customers.find_customer(channel="wechat", address=OPENID)


def messages_of(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    messages, _ = customers.list_messages(conversation_id, 200, None)
    return messages


def reply(conversation_id: str, body: str, key: str | None = None) -> Any:
    from chalicelib.http.replies import send_reply

    return send_reply(conversation_id, {"agent_id": AGENT, "body": body, "channel": "wechat"}, key)


def wechat_customer() -> str:
    """A follower who wrote a text message: their conversation id."""
    response = post(sample("text.xml"))
    assert response.status_code == 200, response.body
    customer = customer_by_openid()
    assert customer is not None
    return str(customer.conversation_id)


def stored_token() -> dict[str, Any] | None:
    from chalicelib.store import table
    from chalicelib.store.access_tokens import access_token_key

    return table.get(access_token_key("wechat", APP_ID))


# --- Inbound through the route -------------------------------------------------------------------------


def test_a_text_message_is_stored_and_acknowledged_with_success(wechat: WeChatHub) -> None:
    response = post(sample("text.xml"))

    assert response.status_code == 200
    assert response.body == b"success"
    assert response.headers["Content-Type"].startswith("text/plain")
    customer = customer_by_openid()
    assert customer is not None
    [message] = messages_of(customer.conversation_id)
    assert message.channel == "wechat" and message.direction == "inbound"
    assert message.provider == "wechat" and message.provider_message_id == "24612837465903281"
    assert message.body == "你好，我的订单还没到 <order #1042> & 谢谢"
    assert message.recipient_address == "gh_3f2a9c1b7d4e"
    assert len(wechat.hub.routing_messages()) == 1


def test_wechats_retries_of_one_message_store_it_once(wechat: WeChatHub) -> None:
    first = post(sample("text.xml"))
    # WeChat retries after 5 s without an answer: same MsgId, a new query string.
    second = post(sample("text.xml"), signed_query(nonce="99887766"))
    third = post(sample("text.xml"))

    assert first.status_code == second.status_code == third.status_code == 200
    customer = customer_by_openid()
    assert [m.provider_message_id for m in messages_of(customer.conversation_id)] == ["24612837465903281"]


def test_every_message_type_lands_in_one_thread(wechat: WeChatHub) -> None:
    names = ["text.xml", "image.xml", "voice.xml", "video.xml", "shortvideo.xml", "location.xml", "link.xml"]
    for name in names:
        assert post(sample(name)).status_code == 200, name

    messages = messages_of(customer_by_openid().conversation_id)
    assert len(messages) == len(names)
    assert messages[1].media[0].url == "http://mmbiz.qpic.cn/mmbiz_jpg/Q3auHgzwzM5kq9Xd0vAhP2c/0"
    assert messages[2].body == "请问什么时候发货"


def test_unfollow_and_follow_change_a_known_customers_consent(wechat: WeChatHub) -> None:
    from chalicelib.services import customers

    wechat_customer()
    customer_id = customer_by_openid().id

    assert post(sample("event_unsubscribe.xml")).status_code == 200
    assert "wechat" in customers.get_customer(customer_id).opted_out
    assert post(sample("event_unsubscribe.xml")).status_code == 200  # a retry changes nothing more
    assert "wechat" in customers.get_customer(customer_id).opted_out

    assert post(sample("event_subscribe.xml")).status_code == 200
    assert "wechat" not in customers.get_customer(customer_id).opted_out


def test_events_of_someone_unknown_or_of_no_use_store_nothing(wechat: WeChatHub) -> None:
    before = wechat.hub.item_count()
    for name in ("event_subscribe.xml", "event_unsubscribe.xml", "event_click.xml", "event_templatesendjobfinish.xml"):
        response = post(sample(name))
        assert response.status_code == 200 and response.body == b"success", name
    assert wechat.hub.item_count() == before
    assert customer_by_openid() is None


def test_a_forged_signature_is_refused_and_nothing_is_stored(wechat: WeChatHub) -> None:
    before = wechat.hub.item_count()
    forged = signed_query().replace("signature=", "signature=0")
    stale = signed_query(timestamp=int(time.time()) - 3600)

    for query in (forged, stale, urlencode({"timestamp": int(time.time()), "nonce": "1"})):
        response = post(sample("text.xml"), query)
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"
    assert wechat.hub.item_count() == before


def test_a_token_that_is_not_configured_refuses_everything(wechat: WeChatHub, monkeypatch) -> None:
    monkeypatch.delenv("WECHAT_TOKEN")
    before = wechat.hub.item_count()
    assert post(sample("text.xml")).status_code == 403
    assert get(signed_query(echostr="123")).status_code == 403
    assert wechat.hub.item_count() == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"this is not xml", "not well-formed"),
        (b'{"MsgType": "text"}', "not well-formed"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml/>', "DOCTYPE"),
        (None, "plaintext"),  # safe mode
    ],
)
def test_authentic_bodies_that_cannot_be_used_are_400_and_store_nothing(
    wechat: WeChatHub, body: bytes | None, says: str
) -> None:
    before = wechat.hub.item_count()
    response = post(body if body is not None else sample("safe_mode.xml"))

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request" and says in error["message"]
    assert wechat.hub.item_count() == before


def test_the_url_check_echoes_echostr(wechat: WeChatHub) -> None:
    response = get(signed_query(echostr="8305999631672647420"))
    assert response.status_code == 200
    assert response.body == b"8305999631672647420"

    forged = get(signed_query(echostr="8305999631672647420").replace("signature=", "signature=f"))
    assert forged.status_code == 403


# --- Agent replies through the emulator ------------------------------------------------------------------


def test_replies_reach_wechat_with_one_token_fetch_shared_through_dynamodb(wechat: WeChatHub) -> None:
    conversation_id = wechat_customer()

    first = reply(conversation_id, "您好！订单明天发货。")
    second = reply(conversation_id, "Anything else?")

    assert first.status_code == 201, first.body
    assert second.status_code == 201, second.body
    assert wechat.emulator.stable_token_requests == 1
    assert wechat.emulator.token_requests == 0  # the classic endpoint would invalidate other holders
    sends = [record["request"] for record in wechat.sandbox.records() if record["provider"] == "wechat"]
    assert sends == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "您好！订单明天发货。"}},
        {"touser": OPENID, "msgtype": "text", "text": {"content": "Anything else?"}},
    ]
    # Sent as UTF-8, not \\u escapes (which WeChat shows literally).
    assert "您好" in wechat.emulator.sends[0]["raw_body"]
    item = stored_token()
    assert item is not None and item["access_token"] and item["expires_at"] > time.time() + 7000
    outbound = [m for m in messages_of(conversation_id) if m.direction == "outbound"]
    assert [(m.status, m.provider, m.provider_message_id) for m in outbound] == [
        ("sent", "wechat", None),
        ("sent", "wechat", None),
    ]


def test_media_urls_go_out_as_links_in_the_text(wechat: WeChatHub) -> None:
    from chalicelib.http.replies import send_reply

    conversation_id = wechat_customer()
    outcome = send_reply(
        conversation_id,
        {"agent_id": AGENT, "body": "Your invoice:", "media_urls": ["https://cdn.example.com/inv.pdf"]},
        None,
    )

    assert outcome.status_code == 201, outcome.body
    [send] = wechat.emulator.sends
    assert send["request"]["text"]["content"] == "Your invoice:\n\nhttps://cdn.example.com/inv.pdf"


def test_an_expired_token_is_refreshed_and_the_send_retried_once(wechat: WeChatHub) -> None:
    conversation_id = wechat_customer()
    assert reply(conversation_id, "first").status_code == 201
    old_token = stored_token()["access_token"]

    wechat.emulator.expire_tokens()  # WeChat's clock passed two hours; the cached expiry has not
    outcome = reply(conversation_id, "second")

    assert outcome.status_code == 201, outcome.body
    assert wechat.emulator.stable_token_requests == 2
    assert [s["request"]["text"]["content"] for s in wechat.emulator.sends] == ["first", "second"]
    new_token = stored_token()["access_token"]
    assert new_token != old_token
    # The next reply uses the refreshed token from DynamoDB without fetching again.
    assert reply(conversation_id, "third").status_code == 201
    assert wechat.emulator.stable_token_requests == 2


def test_a_token_refused_twice_is_force_refreshed_then_the_failure_is_stored(wechat: WeChatHub) -> None:
    conversation_id = wechat_customer()
    invalid = "invalid credential, access_token is invalid or not latest"
    wechat.emulator.fail_next(40001, invalid)
    wechat.emulator.fail_next(40001, invalid)

    outcome = reply(conversation_id, "hello")

    # Normal mode handed back the refused token, so it was force-refreshed (limited to 20 a day).
    assert wechat.emulator.stable_token_requests == 3
    assert outcome.status_code == 502
    [failed] = [m for m in messages_of(conversation_id) if m.direction == "outbound"]
    assert failed.status == "failed" and failed.error_code == "40001"
    token = stored_token()["access_token"]
    assert token not in (failed.error_message or "") and token not in json.dumps(outcome.body)


def test_a_reply_after_the_48_hour_window_is_stored_as_failed_with_45015(wechat: WeChatHub) -> None:
    conversation_id = wechat_customer()
    wechat.emulator.out_of_window.add(OPENID)  # WeChat's own clock says the window closed

    outcome = reply(conversation_id, "too late")

    assert outcome.status_code == 502
    assert "45015" in outcome.body["error"]["message"]
    [failed] = [m for m in messages_of(conversation_id) if m.direction == "outbound"]
    assert failed.status == "failed" and failed.error_code == "45015"
    assert "out of time limit" in (failed.error_message or "")
    assert wechat.emulator.sends == []


def test_wechat_system_busy_is_503_and_stores_nothing(wechat: WeChatHub) -> None:
    conversation_id = wechat_customer()
    before = wechat.hub.item_count()
    wechat.emulator.fail_next(-1, "system error")

    outcome = reply(conversation_id, "hello")

    assert outcome.status_code == 503
    assert [m for m in messages_of(conversation_id) if m.direction == "outbound"] == []
    assert wechat.hub.item_count() == before + 1  # only the shared access token


def test_wrong_app_credentials_are_a_stored_failure_naming_wechats_code(wechat: WeChatHub, monkeypatch) -> None:
    conversation_id = wechat_customer()
    monkeypatch.setenv("WECHAT_APP_SECRET", "not-the-secret")

    outcome = reply(conversation_id, "hello")

    assert outcome.status_code == 502
    [failed] = [m for m in messages_of(conversation_id) if m.direction == "outbound"]
    assert failed.error_code == "40125"
    assert "not-the-secret" not in (failed.error_message or "")


def test_unreachable_wechat_is_503(wechat: WeChatHub, monkeypatch) -> None:
    from chalicelib.config import settings

    conversation_id = wechat_customer()
    monkeypatch.setenv("WECHAT_API_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    settings.cache_clear()

    outcome = reply(conversation_id, "hello")

    assert outcome.status_code == 503
    assert [m for m in messages_of(conversation_id) if m.direction == "outbound"] == []


def test_replies_are_refused_until_the_app_is_configured(wechat: WeChatHub, monkeypatch) -> None:
    from chalicelib.config import settings

    conversation_id = wechat_customer()
    monkeypatch.delenv("WECHAT_APP_ID")
    settings.cache_clear()

    outcome = reply(conversation_id, "hello")

    assert outcome.status_code == 503
    assert outcome.body["error"]["code"] == "channel_not_configured"
    assert "WECHAT_APP_ID" in outcome.body["error"]["message"]
    assert wechat.emulator.token_fetches == 0


# --- The shared token under concurrent refreshers ------------------------------------------------------


def test_a_slow_refresher_never_replaces_a_newer_token(wechat: WeChatHub) -> None:
    from chalicelib.store import access_tokens

    now = time.time()
    assert access_tokens.put("wechat", APP_ID, "newer", int(now) + 7200, now)
    assert not access_tokens.put("wechat", APP_ID, "older", int(now) + 7000, now)
    assert access_tokens.get("wechat", APP_ID).token == "newer"
    # A token WeChat refused is replaced whatever expiry it claimed.
    assert access_tokens.put("wechat", APP_ID, "fresh", int(now) + 100, now, replacing="newer")
    assert access_tokens.get("wechat", APP_ID).token == "fresh"
    assert "fresh" not in repr(access_tokens.get("wechat", APP_ID))
