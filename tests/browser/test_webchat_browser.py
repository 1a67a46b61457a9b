"""Web chat in a real browser: headless Chromium (Playwright) on the running local stack.

A visitor opens `GET /webchat`, writes, an agent replies through the REST API, and the reply
appears on the page; then the chat embedded on a business's site (another origin) with a
signed-in visitor who texted before, who sees their SMS history in the chat.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import requests
from playwright.sync_api import expect

from tests.browser.conftest import WEBCHAT_JWT_SECRET
from tests.e2e.conftest import RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post, wait_for

SCREENSHOT = "/tmp/webchat.png"
SESSION_KEY = "omnihub.webchat.session"


def new_agent(hub: RunningHub) -> str:
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    created = requests.put(
        f"{hub.url}/v1/agents/{agent_id}",
        json={"name": "Grace", "capacity": {"webchat": 5, "sms": 5}},
        headers=hub.api,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return agent_id


def agent_reply(hub: RunningHub, conversation_id: str, agent_id: str, body: str, **fields: Any) -> dict[str, Any]:
    sent = requests.post(
        f"{hub.url}/v1/conversations/{conversation_id}/messages",
        json={"body": body, "agent_id": agent_id, **fields},
        headers={**hub.api, "Idempotency-Key": f"reply-{uuid.uuid4().hex}"},
        timeout=15,
    )
    assert sent.status_code == 201, sent.text
    return dict(sent.json())


@contextmanager
def business_site(html: str) -> Iterator[str]:
    """A business's page on another origin (another port of this machine: Chromium lets a page
    reach the loopback hub only from the loopback address space)."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/shop.html"
    finally:
        server.shutdown()
        server.server_close()


def session_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_visitor_writes_and_the_agents_reply_appears_on_the_page(webchat_hub: RunningHub, page: Any) -> None:
    agent_id = new_agent(webchat_hub)
    page.goto(webchat_hub.url + "/webchat")
    expect(page.get_by_role("heading", name="Chat with us")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("")  # the session is up

    textbox = page.get_by_role("textbox", name="Your message")
    textbox.fill("Hello! Is order 42 on its way?")
    textbox.press("Shift+Enter")  # a new line, not a send
    textbox.press_sequentially("Thanks")
    expect(page.locator(".msg")).to_have_count(0)
    textbox.press("Enter")

    mine = page.locator(".msg.mine")
    expect(mine).to_have_count(1)
    expect(mine.locator(".bubble")).to_have_text("You said: Hello! Is order 42 on its way?\nThanks")
    expect(mine.locator("time")).to_have_count(1)  # confirmed by the hub
    expect(textbox).to_have_value("")
    token = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    conversation_id = session_claims(token)["conv"]
    [stored] = webchat_hub.messages(conversation_id)
    assert (stored["channel"], stored["direction"], stored["body"]) == (
        "webchat",
        "inbound",
        "Hello! Is order 42 on its way?\nThanks",
    )

    # The agent replies through the REST API, with no channel: the customer last wrote on web chat.
    started = time.monotonic()
    reply = agent_reply(webchat_hub, conversation_id, agent_id, "Hi! It ships today, tracking to follow.")
    theirs = page.locator(".msg.theirs")
    expect(theirs).to_have_count(1, timeout=10_000)
    expect(theirs.locator(".bubble")).to_have_text("We said: Hi! It ships today, tracking to follow.")
    shown_after = time.monotonic() - started
    assert (reply["channel"], reply["status"]) == ("webchat", "sent")
    assert shown_after < 5, f"the reply took {shown_after:.1f} s to appear"
    page.screenshot(path=SCREENSHOT)
    delivered = {"id": reply["id"], "status": "delivered"}
    wait_for(lambda: [m for m in webchat_hub.messages(conversation_id) if delivered.items() <= m.items()])

    # A reload resumes the session and shows the history.
    page.reload()
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg").nth(1)).to_have_class("msg theirs")
    assert page.problems == []


def test_the_embedded_chat_signs_the_visitor_in_and_shows_their_sms_history(webchat_hub: RunningHub, page: Any) -> None:
    agent_id = new_agent(webchat_hub)
    number = new_number()
    assert twilio_post(webchat_hub, inbound(number, "Texting you about order 42")).status_code == 200
    customer = wait_for(lambda: webchat_hub.customer_by_phone(number))
    now = int(time.time())
    identity = jwt.encode(
        {"sub": f"crm-{uuid.uuid4().hex[:8]}", "phone": number, "name": "Ada", "iat": now, "exp": now + 300},
        WEBCHAT_JWT_SECRET,
        algorithm="HS256",
    )
    shop = (
        "<!doctype html><html lang='en'><head><title>Acme shop</title></head><body><h1>Acme shop</h1>"
        f"<script src='{webchat_hub.url}/webchat/embed.js' data-title='Chat with Acme' "
        f"data-identity-token='{identity}' async></script></body></html>"
    )
    with business_site(shop) as shop_url:
        page.goto(shop_url)
        page.get_by_role("button", name="Chat with Acme").click()
        chat = page.frame_locator("#omnihub-chat-frame")
        expect(chat.get_by_role("heading", name="Chat with Acme")).to_be_visible()
        history = chat.locator(".msg.mine")
        expect(history).to_have_count(1)
        expect(history.locator(".bubble")).to_have_text("You said: Texting you about order 42")
        expect(history.locator(".meta")).to_contain_text("via SMS")

        textbox = chat.get_by_role("textbox", name="Your message")
        textbox.fill("I am on your website now")
        chat.get_by_role("button", name="Send").click()
        expect(chat.locator(".msg.mine time")).to_have_count(2)
        linked = webchat_hub.get(f"/v1/customers/{customer['id']}").json()
        assert any(identity["kind"] == "external" for identity in linked["identities"])

        agent_reply(webchat_hub, customer["conversation_id"], agent_id, "Welcome, Ada!")
        expect(chat.locator(".msg.theirs .bubble")).to_have_text("We said: Welcome, Ada!", timeout=10_000)
        assert page.problems == []


def test_a_survey_after_the_resolution_is_rated_with_a_button_on_the_page(webchat_hub: RunningHub, page: Any) -> None:
    agent_id = new_agent(webchat_hub)
    page.goto(webchat_hub.url + "/webchat")
    expect(page.get_by_role("status")).to_have_text("")
    textbox = page.get_by_role("textbox", name="Your message")
    textbox.fill("Can I change my delivery address?")
    textbox.press("Enter")
    expect(page.locator(".msg.mine time")).to_have_count(1)
    conversation_id = session_claims(page.evaluate(f"localStorage.getItem('{SESSION_KEY}')"))["conv"]
    agent_reply(webchat_hub, conversation_id, agent_id, "Done: it goes to the new address.")
    resolved = requests.post(
        f"{webchat_hub.url}/v1/conversations/{conversation_id}/resolve", headers=webchat_hub.api, timeout=10
    )
    assert resolved.status_code == 200, resolved.text

    buttons = page.locator(".msg.theirs .choices button")
    expect(buttons).to_have_count(5, timeout=15_000)
    expect(buttons.first).to_have_text("5 Excellent")
    page.get_by_role("button", name="4 Good").click()
    expect(page.locator(".msg.mine").last.locator(".bubble")).to_have_text("You said: 4 Good")
    expect(buttons.first).to_be_disabled()

    def rated() -> Any:
        conversation = webchat_hub.get(f"/v1/conversations/{conversation_id}").json()
        return conversation["survey"] if (conversation.get("survey") or {}).get("rating") == 4 else None

    survey = wait_for(rated)
    assert survey["agent_ids"] == [agent_id] and survey["channel"] == "webchat"
    assert page.problems == []
