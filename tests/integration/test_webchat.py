"""Web chat against the AWS emulator: sessions (anonymous, resumed, signed in, from a link), the
visitor's messages joining the one thread, long polling, presence, and agent replies on web chat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from chalicelib.domain.identity import Identity, IdentityKind
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import crm_events, hub_with_providers, reply, sandbox
from tests.integration.test_ingest import sms
from tests.integration.test_links import created_link

__all__ = ["hub_with_providers", "sandbox"]  # fixtures this module uses

SESSION_SECRET = "integration-webchat-session-secret-0123456789"
JWT_SECRET = "integration-webchat-jwt-secret-" + "0123456789abcdef" * 3


@pytest.fixture
def chat(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    from chalicelib.services import webchat

    monkeypatch.setenv("WEBCHAT_SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("WEBCHAT_JWT_SECRET", JWT_SECRET)
    webchat._touched.clear()
    yield hub
    webchat._touched.clear()


@pytest.fixture
def chat_with_agent(hub_with_providers: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv("WEBCHAT_SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("WEBCHAT_JWT_SECRET", JWT_SECRET)
    return hub_with_providers


def identity_token(sub: str, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300, **claims}, JWT_SECRET, algorithm="HS256")


def start(**payload: Any) -> dict[str, Any]:
    from chalicelib.services import webchat

    return webchat.start_session(payload)


def send(token: str, body: str, client_id: str | None = None) -> tuple[int, dict[str, Any]]:
    from chalicelib.services import webchat
    from chalicelib.webchat.edge import posted_status

    payload: dict[str, Any] = {"body": body}
    if client_id is not None:
        payload["client_id"] = client_id
    answer = webchat.post_message(token, payload)
    return posted_status(answer), answer


def poll(token: str, after: str | None = None, wait: float = 0) -> dict[str, Any]:
    from chalicelib.services import webchat

    return webchat.poll_messages(token, after, wait)


def thread_of(conversation_id: str) -> list[Any]:
    from chalicelib.services import customers

    return customers.list_messages(conversation_id, 200, None)[0]


# --- Anonymous visitors ---------------------------------------------------------------------------


def test_opening_the_chat_stores_nothing_and_the_first_message_makes_the_customer(chat: Hub) -> None:
    from chalicelib.services import customers

    before = chat.item_count()
    session = start()
    assert session["customer_id"] is None and session["conversation_id"] is None
    assert session["session"].startswith("v1.") and session["expires_at"].endswith("Z")
    assert chat.item_count() == before, "a visitor who only opens the chat is not a customer"
    assert poll(session["session"], wait=5)["data"] == [], "nothing to wait for before the first message"

    status, sent = send(session["session"], "Hello from the website", "c-1")

    assert status == 201 and not sent["duplicate"]
    assert (sent["message"]["direction"], sent["message"]["channel"]) == ("inbound", "webchat")
    customer = customers.get_customer(sent["customer_id"])
    assert customer.conversation_id == sent["conversation_id"]
    assert [identity.kind for identity in customer.identities] == [IdentityKind.WEBCHAT]
    assert customer.last_channel == "webchat"
    [task] = chat.routing_messages()
    assert '"channel":"webchat"' in task["Body"] and sent["message"]["id"] in task["Body"]
    [stored] = thread_of(sent["conversation_id"])
    assert (stored.provider, stored.body, stored.id) == ("webchat", "Hello from the website", sent["message"]["id"])


def test_a_repeat_with_the_same_client_id_never_duplicates(chat: Hub) -> None:
    token = start()["session"]
    status, first = send(token, "Is anyone there?", "c-1")
    count = chat.item_count()

    again_status, again = send(first["session"], "Is anyone there?", "c-1")
    old_token_status, old_token = send(token, "Is anyone there?", "c-1")

    assert (status, again_status, old_token_status) == (201, 200, 200)
    assert again["duplicate"] and again["message"]["id"] == old_token["message"]["id"] == first["message"]["id"]
    assert chat.item_count() == count
    assert len(thread_of(first["conversation_id"])) == 1


def test_another_visitor_with_the_same_client_id_gets_their_own_message(chat: Hub) -> None:
    _, ada = send(start()["session"], "I am Ada", "same-id")
    _, bob = send(start()["session"], "I am Bob", "same-id")

    assert not bob["duplicate"] and bob["customer_id"] != ada["customer_id"]
    assert [m["body"] for m in poll(bob["session"])["data"]] == ["I am Bob"]


def test_a_resumed_session_finds_the_thread_and_the_history(chat: Hub) -> None:
    anonymous = start()["session"]
    _, sent = send(anonymous, "first")
    send(sent["session"], "second")

    resumed = start(token=anonymous)

    assert (resumed["customer_id"], resumed["conversation_id"]) == (sent["customer_id"], sent["conversation_id"])
    history = poll(resumed["session"])
    assert [m["body"] for m in history["data"]] == ["first", "second"]
    assert history["next_after"] == history["data"][-1]["id"] and history["more"] is False
    assert poll(resumed["session"], after=history["next_after"])["data"] == []
    assert [m["body"] for m in poll(resumed["session"], after=history["data"][0]["id"])["data"]] == ["second"]


def test_forged_expired_and_tampered_tokens_are_refused_and_store_nothing(
    chat: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.channels import webchat as channel
    from chalicelib.services import webchat

    _, sent = send(start()["session"], "hello")
    token = sent["session"]
    count = chat.item_count()
    version, payload, signature = token.split(".")
    forged = webchat_token_with_other_secret(sent)
    expired = channel.sign_session(
        channel.new_session(
            Identity(kind=IdentityKind.WEBCHAT, value="vis_x"), now=int(time.time()) - 100, ttl_seconds=50
        ),
        SESSION_SECRET,
    )
    altered = (f"{version}.{payload}.{signature[::-1]}", f"{version}.{payload}x.{signature}")
    for bad in (forged, expired, *altered, "", None):
        with pytest.raises(channel.SessionRejected):
            send(bad, "let me in")  # type: ignore[arg-type]
        with pytest.raises(channel.SessionRejected):
            poll(bad)  # type: ignore[arg-type]
        if bad:
            with pytest.raises(channel.SessionRejected):
                start(token=bad)
    with pytest.raises(channel.IdentityRejected):
        start(identity=jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "wrong-" * 12, algorithm="HS256"))
    with pytest.raises(channel.IdentityRejected):
        start(identity=identity_token("crm-1", exp=int(time.time()) - 3600))
    assert chat.item_count() == count

    monkeypatch.delenv("WEBCHAT_SESSION_SECRET")
    with pytest.raises(webchat.NotConfigured):
        start()


def webchat_token_with_other_secret(sent: dict[str, Any]) -> str:
    from chalicelib.channels import webchat as channel

    session = channel.read_session(sent["session"], SESSION_SECRET, int(time.time()))
    return channel.sign_session(session, "another-secret-entirely-0123456789")


def test_bad_requests_are_refused_with_a_reason(chat: Hub) -> None:
    from chalicelib.services.errors import InvalidRequest

    token = start()["session"]
    for body, client_id in (("", None), ("   ", None), ("x" * 4001, None), (5, None), ("hi", "a b")):
        with pytest.raises(InvalidRequest):
            send(token, body, client_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        start(unexpected=True)
    with pytest.raises(InvalidRequest):
        poll(token, after="msg_../../etc")
    with pytest.raises(InvalidRequest):
        poll(token, wait=26)


# --- Long polling, presence ------------------------------------------------------------------------


def test_a_long_poll_returns_as_soon_as_a_message_arrives(chat: Hub) -> None:
    from chalicelib.services.ingest import ingest

    _, sent = send(start()["session"], "Hi, I also texted you", "c-1")
    after = sent["message"]["id"]
    customer_id = sent["customer_id"]

    def text_later() -> None:
        time.sleep(1.0)
        # The same customer writes by SMS (their phone linked): the page shows it too.
        from chalicelib.services import customers
        from chalicelib.services.customers import CustomerPatch

        customers.patch_customer(customer_id, CustomerPatch(phone="+15017122661"))
        ingest(sms("SMweb1", body="sent from my phone"))

    writer = threading.Thread(target=text_later)
    started = time.monotonic()
    writer.start()
    answer = poll(sent["session"], after=after, wait=10)
    elapsed = time.monotonic() - started
    writer.join()

    assert [(m["body"], m["channel"]) for m in answer["data"]] == [("sent from my phone", "sms")]
    assert 0.9 < elapsed < 4, elapsed
    assert set(answer["data"][0]) == {"id", "direction", "channel", "body", "created_at", "media", "choices"}


def test_an_idle_long_poll_waits_then_answers_empty(chat: Hub) -> None:
    _, sent = send(start()["session"], "anyone?")

    started = time.monotonic()
    answer = poll(sent["session"], after=sent["message"]["id"], wait=1.5)

    assert 1.4 < time.monotonic() - started < 3.5
    assert answer["data"] == [] and answer["next_after"] == sent["message"]["id"]


def test_the_wait_never_runs_past_the_lambda_deadline(chat: Hub) -> None:
    from chalicelib.services import webchat

    _, sent = send(start()["session"], "anyone?")

    started = time.monotonic()
    answer = webchat.poll_messages(sent["session"], sent["message"]["id"], 25, time_left=2.5)

    assert answer["data"] == [] and time.monotonic() - started < 1.5, "2.5 s left, less a 2 s margin"


def test_writing_and_polling_mark_the_visitor_connected(chat: Hub) -> None:
    from datetime import timedelta

    from chalicelib.domain.messages import utcnow
    from chalicelib.services import webchat
    from chalicelib.store import presence

    _, sent = send(start()["session"], "hi")
    conversation_id = sent["conversation_id"]
    assert webchat.is_connected(conversation_id, 30), "a visitor who just wrote is on the page"

    poll(sent["session"])

    assert webchat.is_connected(conversation_id, 30)
    seen = webchat.last_seen(conversation_id)
    assert seen is not None
    assert not webchat.is_connected(conversation_id, 30, now=seen + timedelta(seconds=31))
    assert not webchat.is_connected("conv_nonsense", 30)
    # Within ten seconds a second poll writes nothing, in this process or another.
    assert not presence.record_last_seen(conversation_id, utcnow(), utcnow() - timedelta(seconds=10))
    poll(sent["session"])
    assert webchat.last_seen(conversation_id) == seen


# --- Signed-in visitors -----------------------------------------------------------------------------


def test_a_signed_in_visitor_known_by_phone_joins_that_customers_thread(chat: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    texted = ingest(sms("SMsign1", body="texting first"))

    session = start(identity=identity_token("crm-42", phone="(501) 712-2661", email="ada@example.com", name="Ada"))

    assert (session["customer_id"], session["conversation_id"]) == (texted.customer_id, texted.conversation_id)
    customer = customers.get_customer(texted.customer_id)
    assert {identity.key for identity in customer.identities} == {
        "phone#+15017122661",
        "external#crm-42",
        "email#ada@example.com",
    }
    assert customer.email == "ada@example.com"
    assert [m["body"] for m in poll(session["session"])["data"]] == ["texting first"]
    _, sent = send(session["session"], "now on the website")
    assert sent["conversation_id"] == texted.conversation_id
    assert customers.get_customer(texted.customer_id).provider_names.get("webchat") == "Ada"

    again = start(identity=identity_token("crm-42"))
    assert again["customer_id"] == texted.customer_id


def test_a_new_signed_in_visitor_becomes_a_customer_with_their_contacts_linked(chat: Hub) -> None:
    from chalicelib.services import customers

    session = start(identity=identity_token("crm-77", email="grace@example.com"))
    assert session["customer_id"] is None

    _, sent = send(session["session"], "hello")

    found = customers.find_customer(email="Grace@Example.com")
    assert found is not None and found.id == sent["customer_id"]
    assert {identity.key for identity in found.identities} == {"external#crm-77", "email#grace@example.com"}


def test_a_contact_that_belongs_to_another_customer_is_not_taken(chat: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    someone = ingest(sms("SMother", sender="+15017120000", body="I am someone else"))
    mine = start(identity=identity_token("crm-9"))
    _, sent = send(mine["session"], "hi")

    session = start(identity=identity_token("crm-9", phone="+15017120000"))

    assert session["customer_id"] == sent["customer_id"] != someone.customer_id
    assert customers.find_customer(phone="+15017120000").id == someone.customer_id
    assert [m["body"] for m in poll(session["session"])["data"]] == ["hi"]


# --- Links and agent replies -----------------------------------------------------------------------


def test_a_webchat_link_continues_the_customers_thread(chat_with_agent: Hub, sandbox: ProviderSandbox) -> None:
    from urllib.parse import parse_qs, urlparse

    from chalicelib.domain.links import LinkRefused, LinkTarget
    from chalicelib.services.ingest import ingest

    texted = ingest(sms("SMlink1", body="can we chat online?"))
    _, created = created_link(texted.conversation_id, LinkTarget.WEBCHAT)
    link = parse_qs(urlparse(created["url"]).query)["link"][0]

    session = start(link=link)

    assert session["conversation_id"] == texted.conversation_id
    bodies = [m["body"] for m in poll(session["session"])["data"]]
    assert bodies[0] == "can we chat online?" and "webchat?link=" in bodies[1]
    _, sent = send(session["session"], "here I am")
    assert sent["conversation_id"] == texted.conversation_id
    count = chat_with_agent.item_count()
    with pytest.raises(LinkRefused):
        start(link=link)  # single use
    with pytest.raises(LinkRefused):
        start(identity=identity_token("crm-link", email="new@example.com"), link=link[:-4] + "AAAA")
    assert chat_with_agent.item_count() == count, "a refused link stores nothing, not even the sign-in's contacts"


def test_an_agent_reply_on_web_chat_reaches_the_polling_visitor(chat_with_agent: Hub, sandbox: ProviderSandbox) -> None:
    _, sent = send(start()["session"], "Where is my order?", "c-1")
    conversation_id = sent["conversation_id"]
    crm_events(chat_with_agent)
    results: dict[str, Any] = {}

    def agent_replies() -> None:
        time.sleep(0.8)
        results["reply"] = reply(conversation_id, "reply-1", body="It ships today!")

    agent = threading.Thread(target=agent_replies)
    started = time.monotonic()
    agent.start()
    answer = poll(sent["session"], after=sent["message"]["id"], wait=10)
    elapsed = time.monotonic() - started
    agent.join()

    outcome = results["reply"]
    assert outcome.status_code == 201, outcome.body
    assert (outcome.body["channel"], outcome.body["provider"], outcome.body["status"]) == ("webchat", "webchat", "sent")
    assert outcome.body["provider_message_id"] is None
    assert sandbox.records() == [], "a web chat reply calls no provider"
    assert [(m["body"], m["direction"]) for m in answer["data"]] == [("It ships today!", "outbound")]
    assert elapsed < 3, elapsed
    [stored] = [m for m in thread_of(conversation_id) if m.direction == "outbound"]
    assert stored.status == "delivered", "the page has it: delivered"
    updates = crm_events(chat_with_agent, "message.status_updated")
    assert [(e["data"]["message"]["id"], e["data"]["status"]) for e in updates] == [(stored.id, "delivered")]
    poll(sent["session"], after=sent["message"]["id"])
    assert crm_events(chat_with_agent, "message.status_updated") == [], "delivered once"


def test_a_reply_with_no_channel_goes_to_web_chat_when_the_customer_last_wrote_there(
    chat_with_agent: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.services.ingest import ingest

    texted = ingest(sms("SMboth", body="texting"))
    session = start(identity=identity_token("crm-5", phone="+15017122661"))
    send(session["session"], "and now online")

    answer = reply(texted.conversation_id, body="Hi on the website")

    assert answer.status_code == 201 and answer.body["channel"] == "webchat"
    assert sandbox.records() == []
    sms_reply = reply(texted.conversation_id, body="And by text", channel="sms")
    assert sms_reply.status_code == 201 and sms_reply.body["provider"] == "twilio"
    bodies = [(m["body"], m["channel"]) for m in poll(session["session"])["data"]]
    assert bodies[-2:] == [("Hi on the website", "webchat"), ("And by text", "sms")]


def test_a_web_chat_reply_to_a_customer_who_never_opened_the_chat_is_refused(
    chat_with_agent: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.services.ingest import ingest

    texted = ingest(sms("SMonly", body="texting only"))

    answer = reply(texted.conversation_id, body="hi", channel="webchat")

    assert (answer.status_code, answer.body["error"]["code"]) == (422, "unsupported_channel")
