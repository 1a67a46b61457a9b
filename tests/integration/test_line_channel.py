"""LINE end to end: signed webhooks through the real route into the AWS emulator, and agent replies
through chalicelib.channels.line to the LINE emulator (local/chat_sandbox/line.py) over HTTP.

Reply tokens come from the emulator (`issue_reply_token()`), as LINE puts them in webhook events,
so the emulator can tell a reply spent with a valid token from one that should have been a push.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.channels.base import Outgoing
from chalicelib.domain.messages import utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable
from local.chat_sandbox.line import FAILING_USER, LineEmulator
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import AGENT

CHANNEL_SECRET = "4f1b8a0c6e2d4c8fa9b3e5d7c1a2b3c4"
ACCESS_TOKEN = "line-test-channel-access-token"
BOT = "Ub0d6b2a3c4d5e6f708192a3b4c5d6e7f"
CUSTOMER = "U4af4980629a5f1c0b7e9d2c3a8b6f011"
OTHER = "U91eeaf62d901234567890abcdef01234"


@pytest.fixture(scope="module")
def line_api(sandbox: ProviderSandbox) -> LineEmulator:
    return sandbox.add_emulator(LineEmulator(ACCESS_TOKEN))


@pytest.fixture
def line_hub(
    hub_with_providers: Hub, sandbox: ProviderSandbox, line_api: LineEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hub]:
    from chalicelib.config import settings

    monkeypatch.setenv("LINE_CHANNEL_SECRET", CHANNEL_SECRET)
    monkeypatch.setenv("LINE_CHANNEL_ACCESS_TOKEN", ACCESS_TOKEN)
    monkeypatch.setenv("LINE_API_BASE_URL", sandbox.url_for("line"))
    settings.cache_clear()
    yield hub_with_providers
    settings.cache_clear()


@pytest.fixture
def client(line_hub: Hub) -> Iterator[Client]:
    import app

    with Client(app.app) as test_client:
        yield test_client


# --- Webhooks as LINE sends them -------------------------------------------------------------------------

_event_ids = iter(f"01J{n:023d}" for n in range(1, 10_000))


def text_event(
    text: str, user: str = CUSTOMER, *, reply_token: str | None = None, event_id: str | None = None, redelivery=False
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user},
        "webhookEventId": event_id or next(_event_ids),
        "deliveryContext": {"isRedelivery": redelivery},
        "message": {"id": str(time.time_ns()), "type": "text", "quoteToken": "q3Plxr4AgKd", "text": text},
    }
    if reply_token:
        event["replyToken"] = reply_token
    return event


def follow_event(kind: str, user: str = CUSTOMER, unblocked: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user},
        "webhookEventId": next(_event_ids),
        "deliveryContext": {"isRedelivery": False},
    }
    if kind == "follow":
        event["replyToken"] = "85cbe770fa8b4f45bbe077b1d4be4a36"
        event["follow"] = {"isUnblocked": unblocked}
    return event


def deliver(client: Client, *events: dict[str, Any], signature: str | None = None, body: bytes | None = None):
    """POST a webhook the way LINE does: UTF-8 JSON, signed over exactly these bytes."""
    if body is None:
        body = json.dumps({"destination": BOT, "events": list(events)}, ensure_ascii=False).encode("utf-8")
    if signature is None:
        signature = base64.b64encode(hmac.new(CHANNEL_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Line-Signature": signature}
    return client.http.post("/webhooks/line", headers=headers, body=body)


def customer_of(user: str = CUSTOMER):
    from chalicelib.services import customers

    return customers.find_customer(channel="line", address=user)


def thread_of(user: str = CUSTOMER) -> list[Any]:
    from chalicelib.services import customers

    found = customer_of(user)
    assert found is not None
    messages, _ = customers.list_messages(found.conversation_id, 200, None)
    return messages


def reply(user: str = CUSTOMER, key: str | None = None, now=None, **fields: Any):
    from chalicelib.http.replies import send_reply

    found = customer_of(user)
    assert found is not None
    return send_reply(found.conversation_id, {"agent_id": AGENT, "channel": "line", **fields}, key, now=now)


# --- Inbound ----------------------------------------------------------------------------------------------


def test_a_text_message_makes_a_customer_known_by_their_line_user_id(line_hub: Hub, client: Client) -> None:
    response = deliver(client, text_event("配送状況を教えてください"))

    assert response.status_code == 200 and response.body == b"OK"
    customer = customer_of()
    assert customer is not None
    assert [(i.kind.value, i.value) for i in customer.identities] == [("line", CUSTOMER)]
    [message] = thread_of()
    assert (message.channel.value, message.direction.value, message.provider) == ("line", "inbound", "line")
    assert message.body == "配送状況を教えてください"
    assert message.sender_address == CUSTOMER and message.recipient_address == BOT
    assert len(line_hub.routing_messages()) == 1


def test_a_redelivered_webhook_is_stored_once(line_hub: Hub, client: Client) -> None:
    first = text_event("Where is my parcel?")
    again = {**first, "deliveryContext": {"isRedelivery": True}}

    assert deliver(client, first).status_code == 200
    assert deliver(client, again).status_code == 200
    assert deliver(client, again).status_code == 200

    [message] = thread_of()
    assert message.provider_message_id == first["webhookEventId"]
    from chalicelib.services import customers

    assert customers.get_conversation(customer_of().conversation_id).message_count == 1
    assert len(line_hub.routing_messages()) == 1


def test_follow_and_unfollow_change_a_known_customers_consent(line_hub: Hub, client: Client) -> None:
    deliver(client, text_event("hello"))
    assert "line" not in customer_of().opted_out

    assert deliver(client, follow_event("unfollow")).status_code == 200
    assert "line" in customer_of().opted_out

    assert deliver(client, follow_event("follow", unblocked=True)).status_code == 200
    assert "line" not in customer_of().opted_out


def test_a_follow_from_someone_who_never_wrote_stores_nothing(line_hub: Hub, client: Client) -> None:
    before = line_hub.item_count()

    assert deliver(client, follow_event("follow", user=OTHER), follow_event("unfollow", user=OTHER)).status_code == 200

    assert line_hub.item_count() == before
    assert customer_of(OTHER) is None


def test_group_chat_messages_are_acknowledged_and_not_stored(line_hub: Hub, client: Client) -> None:
    before = line_hub.item_count()
    group = text_event("hi all")
    group["source"] = {"type": "group", "groupId": "C" + "a" * 32, "userId": CUSTOMER}

    assert deliver(client, group).status_code == 200

    assert line_hub.item_count() == before


# --- The route's refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl", "forged"])
def test_a_bad_signature_is_403_and_nothing_is_stored(line_hub: Hub, client: Client, signature: str) -> None:
    before = line_hub.item_count()

    response = deliver(client, text_event("let me in"), signature=signature)

    assert response.status_code == 403
    assert json.loads(response.body)["error"]["code"] == "forbidden"
    assert line_hub.item_count() == before
    assert line_hub.routing_messages() == []


def test_without_the_channel_secret_webhooks_are_refused(
    line_hub: Hub, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINE_CHANNEL_SECRET")
    before = line_hub.item_count()

    assert deliver(client, text_event("anyone there?")).status_code == 403

    assert line_hub.item_count() == before


def test_the_consoles_verify_request_is_answered_200(line_hub: Hub, client: Client) -> None:
    before = line_hub.item_count()

    response = deliver(client, body=json.dumps({"destination": BOT, "events": []}).encode())

    assert response.status_code == 200 and response.body == b"OK"
    assert line_hub.item_count() == before


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"destination": "x"}', b'{"events": "none"}'])
def test_a_signed_but_malformed_body_is_400(line_hub: Hub, client: Client, body: bytes) -> None:
    before = line_hub.item_count()

    response = deliver(client, body=body)

    assert response.status_code == 400
    error = json.loads(response.body)["error"]
    assert error["code"] and error["message"]
    assert line_hub.item_count() == before


# --- Replies: the reply token while fresh, else push -------------------------------------------------------


def test_a_prompt_reply_spends_the_reply_token_and_the_next_one_is_pushed(
    line_hub: Hub, client: Client, line_api: LineEmulator
) -> None:
    from chalicelib.channels import line

    token = line_api.issue_reply_token(CUSTOMER)
    deliver(client, text_event("Is the shop open today?", reply_token=token))

    first = reply(body="Yes, until 8 pm!")
    second = reply(body="And tomorrow from 9 am.")

    assert (first.status_code, second.status_code) == (201, 201)
    [replied] = line_api.sends("reply")
    assert replied["request"] == {"replyToken": token, "messages": [{"type": "text", "text": "Yes, until 8 pm!"}]}
    [pushed] = line_api.sends("push")
    assert pushed["request"] == {"to": CUSTOMER, "messages": [{"type": "text", "text": "And tomorrow from 9 am."}]}
    assert pushed["retry_key"] == line.retry_key(second.body["id"])
    # The stored messages carry LINE's sent-message ids; LINE has no delivery receipts: "sent".
    assert (first.body["provider"], first.body["provider_message_id"], first.body["status"]) == (
        "line",
        replied["id"],
        "sent",
    )
    assert second.body["provider_message_id"] == pushed["id"]
    assert [m.body for m in thread_of() if m.direction.value == "outbound"] == [
        "Yes, until 8 pm!",
        "And tomorrow from 9 am.",
    ]


def test_a_reply_after_the_token_went_stale_is_pushed(line_hub: Hub, client: Client, line_api: LineEmulator) -> None:
    token = line_api.issue_reply_token(CUSTOMER)
    deliver(client, text_event("Any news?", reply_token=token))

    outcome = reply(body="Not yet, sorry.", now=utcnow() + timedelta(minutes=2))

    assert outcome.status_code == 201
    assert line_api.sends("reply") == []
    [pushed] = line_api.sends("push")
    assert pushed["to"] == CUSTOMER


def test_a_token_line_refuses_falls_back_to_a_push(line_hub: Hub, client: Client, line_api: LineEmulator) -> None:
    token = line_api.issue_reply_token(CUSTOMER)
    deliver(client, text_event("Hello?", reply_token=token))
    line_api.expire_reply_token(token)  # LINE's clock ran out before the hub's did

    outcome = reply(body="Hello! How can I help?")

    assert outcome.status_code == 201
    assert line_api.sends("reply") == []
    [pushed] = line_api.sends("push")
    assert outcome.body["provider_message_id"] == pushed["id"]


def test_long_text_and_an_image_go_as_several_line_messages(
    line_hub: Hub, client: Client, line_api: LineEmulator
) -> None:
    deliver(client, text_event("Send me the photos"))
    apples = "🍎" * 3000  # 6,000 UTF-16 units: LINE counts these, so it takes two text messages

    outcome = reply(body=apples, media_urls=["https://cdn.example.com/photos/front.png"])

    assert outcome.status_code == 201, outcome.body
    [pushed] = line_api.sends("push")
    kinds = [m["type"] for m in pushed["request"]["messages"]]
    assert kinds == ["text", "text", "image"]
    assert "".join(m["text"] for m in pushed["request"]["messages"][:2]) == apples
    assert pushed["request"]["messages"][2]["originalContentUrl"] == "https://cdn.example.com/photos/front.png"


def test_a_refusal_by_line_is_stored_as_failed(line_hub: Hub, client: Client, line_api: LineEmulator) -> None:
    deliver(client, text_event("hi", user=FAILING_USER))

    outcome = reply(user=FAILING_USER, body="Hello")

    assert outcome.status_code == 502
    [failed] = [m for m in thread_of(FAILING_USER) if m.direction.value == "outbound"]
    assert (failed.status.value, failed.error_code) == ("failed", "400")
    assert "Failed to send messages" in (failed.error_message or "")
    assert line_api.sends() == []


def test_line_unavailable_is_503_and_nothing_is_stored(line_hub: Hub, client: Client, line_api: LineEmulator) -> None:
    deliver(client, text_event("hi"))
    line_api.fail_next(500)

    outcome = reply(body="Hello", key="line-retry-1")

    assert outcome.status_code == 503
    assert [m for m in thread_of() if m.direction.value == "outbound"] == []
    # The same request again goes through once LINE is back.
    assert reply(body="Hello", key="line-retry-1").status_code == 201
    assert len(line_api.sends("push")) == 1


# --- The push retry key -----------------------------------------------------------------------------------


def outgoing(hub_message_id: str, body: str = "Your order has shipped", timeout: float = 5.0) -> Outgoing:
    return Outgoing(channel="line", recipient=CUSTOMER, body=body, hub_message_id=hub_message_id, timeout=timeout)


def test_a_repeated_push_of_one_message_is_delivered_once(line_hub: Hub, line_api: LineEmulator) -> None:
    from chalicelib.channels import line

    first = line.send(outgoing("msg_repeat_1"))
    again = line.send(outgoing("msg_repeat_1"))  # LINE answers 409: already accepted
    other = line.send(outgoing("msg_repeat_2"))

    assert again == first
    assert first.provider_message_id and other.provider_message_id != first.provider_message_id
    assert [r["id"] for r in line_api.sends("push")] == [first.provider_message_id, other.provider_message_id]


def test_a_push_that_timed_out_after_line_accepted_it_is_not_sent_twice(line_hub: Hub, line_api: LineEmulator) -> None:
    from chalicelib.channels import line

    line_api.delay_next(2.0)
    with pytest.raises(ProviderUnavailable):
        line.send(outgoing("msg_slow_1", timeout=0.5))  # LINE took it, the answer came too late

    retried = line.send(outgoing("msg_slow_1"))

    [delivered] = line_api.sends("push")
    assert retried.provider_message_id == delivered["id"]


def test_a_client_retry_of_a_reply_that_timed_out_is_delivered_once(
    line_hub: Hub, client: Client, line_api: LineEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(client, text_event("Hello?"))
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "0.5")
    line_api.delay_next(2.0)  # LINE takes the push, its answer comes too late
    later = utcnow() + timedelta(minutes=2)

    first = reply(body="We are on it.", key="crm-retry-1", now=later)
    assert first.status_code == 503  # nothing recorded: the client retries with the same key
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "5")
    second = reply(body="We are on it.", key="crm-retry-1", now=later)

    assert second.status_code == 201
    [delivered] = line_api.sends("push")
    assert second.body["provider_message_id"] == delivered["id"]


def test_provider_errors_map_to_rejected_or_unavailable(
    line_hub: Hub, line_api: LineEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.channels import line

    for status in (429, 500, 503):
        line_api.fail_next(status)
        with pytest.raises(ProviderUnavailable, match=str(status)):
            line.send(outgoing(f"msg_fail_{status}"))
    with pytest.raises(ProviderRejected) as rejected:
        line.send(Outgoing(channel="line", recipient="not-a-user", body="x", hub_message_id="msg_bad_to"))
    assert (rejected.value.code, rejected.value.http_status) == ("400", 400)
    assert "to" in rejected.value.message

    monkeypatch.setenv("LINE_CHANNEL_ACCESS_TOKEN", "revoked-token")
    with pytest.raises(ProviderRejected) as unauthorised:
        line.send(outgoing("msg_bad_token"))
    assert unauthorised.value.code == "401" and "revoked-token" not in str(unauthorised.value)

    monkeypatch.setenv("LINE_API_BASE_URL", "http://127.0.0.1:9/line")  # nothing listens there
    from chalicelib.config import settings

    settings.cache_clear()
    with pytest.raises(ProviderUnavailable):
        line.send(outgoing("msg_unreachable"))
    assert line_api.sends() == []


# --- The emulator checks what LINE checks ------------------------------------------------------------------


def call(url: str, payload: Any, token: str = ACCESS_TOKEN, **headers: str) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_the_emulator_refuses_what_line_refuses(sandbox: ProviderSandbox, line_api: LineEmulator) -> None:
    base = sandbox.url_for("line")
    push, reply_url = f"{base}/v2/bot/message/push", f"{base}/v2/bot/message/reply"
    text = [{"type": "text", "text": "hi"}]

    status, headers, body = call(push, {"to": CUSTOMER, "messages": text}, token="wrong")
    assert status == 401 and body["message"].startswith("Authentication failed")
    assert "x-line-request-id" in {name.lower() for name in headers}

    assert call(push, {"to": CUSTOMER, "messages": []})[0] == 400
    assert call(push, {"to": CUSTOMER, "messages": text * 6})[2]["details"][0]["property"] == "messages"
    too_long = [{"type": "text", "text": "🍎" * 2501}]  # 2,501 characters but 5,002 UTF-16 units
    assert call(push, {"to": CUSTOMER, "messages": too_long})[2]["details"][0]["property"] == "messages[0].text"
    http_image = [{"type": "image", "originalContentUrl": "http://x.example/a.png", "previewImageUrl": "http://x"}]
    assert len(call(push, {"to": CUSTOMER, "messages": http_image})[2]["details"]) == 2
    assert call(push, {"to": "U123", "messages": text})[0] == 400
    assert call(push, {"to": CUSTOMER, "messages": text}, **{"X-Line-Retry-Key": "not-a-uuid"})[0] == 400

    token = line_api.issue_reply_token(CUSTOMER)
    key = "123e4567-e89b-12d3-a456-426614174000"
    assert call(reply_url, {"replyToken": token, "messages": text}, **{"X-Line-Retry-Key": key})[0] == 400
    assert call(reply_url, {"replyToken": token, "messages": text})[0] == 200
    status, _, body = call(reply_url, {"replyToken": token, "messages": text})
    assert (status, body) == (400, {"message": "Invalid reply token"})  # single use

    status, _, accepted = call(push, {"to": CUSTOMER, "messages": text}, **{"X-Line-Retry-Key": key})
    assert status == 200
    status, headers, repeat = call(push, {"to": CUSTOMER, "messages": text}, **{"X-Line-Retry-Key": key})
    assert status == 409 and repeat["sentMessages"] == accepted["sentMessages"]
    assert {name.lower(): value for name, value in headers.items()}["x-line-accepted-request-id"]


def test_the_sandbox_mints_reply_tokens_for_webhooks_sent_by_hand(
    line_hub: Hub, client: Client, sandbox: ProviderSandbox, line_api: LineEmulator
) -> None:
    from local.chat_sandbox.line import LOCAL_CUSTOMER, webhook_event

    request = urllib.request.Request(
        f"{sandbox.url_for('line')}/sandbox/reply-token",
        data=json.dumps({"userId": LOCAL_CUSTOMER}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        minted = json.loads(answer.read())
    assert answer.status == 201 and minted["expiresIn"] == 60

    assert deliver(client, webhook_event("message", LOCAL_CUSTOMER, "Hi!", minted["replyToken"])).status_code == 200
    assert reply(user=LOCAL_CUSTOMER, body="Hi, how can we help?").status_code == 201

    [replied] = line_api.sends("reply")
    assert replied["request"]["replyToken"] == minted["replyToken"] and replied["to"] == LOCAL_CUSTOMER


def test_a_refused_link_code_is_answered_with_the_reply_token_which_is_then_spent(
    line_hub: Hub, client: Client, line_api: LineEmulator
) -> None:
    token = line_api.issue_reply_token(CUSTOMER)
    deliver(client, text_event("My code is LINK-ZZZZZZ", reply_token=token))

    [told] = line_api.sends("reply")
    assert told["request"]["replyToken"] == token
    assert "not valid" in told["request"]["messages"][0]["text"]
    assert customer_of().reply_token is None  # claimed: an agent's reply will not try it again

    assert reply(body="How can I help?").status_code == 201
    assert len(line_api.sends("reply")) == 1 and len(line_api.sends("push")) == 1
