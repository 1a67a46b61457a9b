"""The README's seed scenario, over HTTP only: a customer writes on WhatsApp, the agent sends a
web chat link, the customer continues in the web chat after signing in and sees the whole
history, closes the tab, and still receives the agent's answer by SMS."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlparse

import jwt
import requests

from local.stack import LOCAL_DEFAULTS
from tests.e2e.conftest import RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post, wait_for
from tests.e2e.test_routing_e2e import api, sandbox_url


def test_whatsapp_then_signed_in_web_chat_then_sms_when_the_tab_is_closed(running_hub: RunningHub) -> None:
    number = new_number()
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    assert api(running_hub, "PUT", f"/v1/agents/{agent_id}", {"name": "Grace", "capacity": {"whatsapp": 1}}).ok

    # 1. The customer writes on WhatsApp.
    assert twilio_post(running_hub, inbound(f"whatsapp:{number}", "Hi, where is order 42?")).status_code == 200
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    conversation_id = customer["conversation_id"]

    # 2. The agent invites them to the web chat; the invitation goes out on WhatsApp.
    link = api(
        running_hub, "POST", f"/v1/conversations/{conversation_id}/links", {"target": "webchat", "agent_id": agent_id}
    )
    assert link.status_code == 201, link.text
    assert link.json()["invitation"]["channel"] == "whatsapp"
    token = parse_qs(urlparse(link.json()["url"]).query)["link"][0]

    # 3. They open the link signed in (a JWT from the business's own site) and see the whole history.
    identity = jwt.encode(
        {"sub": f"shop-user-{uuid.uuid4().hex[:6]}", "phone": number, "exp": int(time.time()) + 300},
        LOCAL_DEFAULTS["WEBCHAT_JWT_SECRET"],
        algorithm="HS256",
    )
    session = requests.post(
        running_hub.url + "/webchat/sessions", json={"link": token, "identity": identity}, timeout=10
    )
    assert session.status_code == 201, session.text
    assert session.json()["customer_id"] == customer["id"]
    bearer = {"Authorization": f"Bearer {session.json()['session']}"}
    history = requests.get(running_hub.url + "/webchat/messages?wait=0", headers=bearer, timeout=10).json()["data"]
    assert [m["channel"] for m in history][:2] == ["whatsapp", "whatsapp"]
    assert history[0]["body"] == "Hi, where is order 42?"
    sent = requests.post(
        running_hub.url + "/webchat/messages",
        json={"body": "Signed in now", "client_id": "c1"},
        headers=bearer,
        timeout=10,
    )
    assert sent.status_code in (200, 201), sent.text

    # 4. They close the tab (no more polling); the agent answers on web chat.
    time.sleep(3)
    answer = requests.post(
        running_hub.url + f"/v1/conversations/{conversation_id}/messages",
        json={"agent_id": agent_id, "body": "It ships today, tracking to follow."},
        headers={**running_hub.api, "Idempotency-Key": f"seed-{conversation_id}"},
        timeout=15,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["channel"] == "webchat"

    # 5. ...and still receive it by SMS, with a link back to the chat.
    def sms_to_customer() -> list[str]:
        records = requests.get(sandbox_url(running_hub) + "/sandbox/messages?provider=twilio", timeout=10).json()
        return [r["request"]["Body"] for r in records["messages"] if r["request"].get("To") == number]

    texts = wait_for(sms_to_customer)
    assert any("It ships today" in text and "/webchat?link=" in text for text in texts), texts
    thread = running_hub.messages(conversation_id)
    assert {m["channel"] for m in thread} >= {"whatsapp", "webchat", "sms"}
    assert [m["direction"] for m in thread].count("event") == 1, "the switch to web chat is marked once"
