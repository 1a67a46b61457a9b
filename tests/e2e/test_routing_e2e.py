"""The contact-centre flow over HTTP: an agent registers, a customer writes, the CRM receives a
signed offer, the agent accepts, resolves; plus the API's validation of agents and transfers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from tests.e2e.conftest import RunningHub
from tests.e2e.crm_receiver import CrmReceiver
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post, wait_for


@pytest.fixture
def crm(running_hub: RunningHub) -> Iterator[tuple[CrmReceiver, str]]:
    receiver = CrmReceiver()
    response = requests.post(
        running_hub.url + "/v1/webhooks",
        json={"url": receiver.url, "events": ["*"]},
        headers=running_hub.api,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    endpoint = response.json()
    assert endpoint["secret"].startswith("whsec_")
    yield receiver, endpoint["secret"]
    requests.delete(running_hub.url + f"/v1/webhooks/{endpoint['id']}", headers=running_hub.api, timeout=10)
    receiver.stop()


def sandbox_url(hub: RunningHub) -> str:
    """The provider sandbox's address, as `make run` prints it."""
    line = wait_for(lambda: next((line for line in hub.log().splitlines() if "Provider sandbox" in line), None))
    return line.split()[2].removesuffix("/sandbox/messages")


def api(hub: RunningHub, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, hub.url + path, json=body, headers=hub.api, timeout=15)


def test_offer_reaches_the_crm_signed_and_the_agent_accepts_and_resolves(
    running_hub: RunningHub, crm: tuple[CrmReceiver, str]
) -> None:
    receiver, secret = crm
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    created = api(
        running_hub,
        "PUT",
        f"/v1/agents/{agent_id}",
        {"name": "Grace", "skills": {"billing": 3}, "capacity": {"sms": 1}},
    )
    assert created.status_code == 201, created.text
    number = new_number()
    assert twilio_post(running_hub, inbound(number, "Urgent: hello, I need help")).status_code == 200
    wait_for(lambda: [e for e in receiver.events("conversation.queued") if e["data"]["customer"]["phone"] == number])

    became = api(running_hub, "POST", f"/v1/agents/{agent_id}/status", {"status": "available"})
    assert became.json()["status"] == "available"

    offer_event = wait_for(
        lambda: next((e for e in receiver.events("offer.created") if e["data"]["agent"]["id"] == agent_id), None)
    )
    delivery = next(
        item for item in receiver.received if b"offer.created" in item["body"] and agent_id.encode() in item["body"]
    )
    Webhook(secret).verify(delivery["body"], {k.lower(): v for k, v in delivery["headers"].items()})
    assert offer_event["data"]["customer"]["phone"] == number
    assert offer_event["data"]["conversation"]["status"] == "waiting"
    offer_id = offer_event["data"]["offer"]["id"]
    message_events = [e for e in receiver.events("message.created") if e["data"]["customer"]["phone"] == number]
    assert message_events and message_events[0]["data"]["message"]["body"] == "Urgent: hello, I need help"

    accepted = api(running_hub, "POST", f"/v1/offers/{offer_id}/accept")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    conversation_id = offer_event["data"]["conversation"]["id"]
    conversation = api(running_hub, "GET", f"/v1/conversations/{conversation_id}").json()
    assert conversation["status"] == "assigned"
    assert api(running_hub, "GET", f"/v1/agents/{agent_id}").json()["load"] == {"sms": 1}
    wait_for(lambda: receiver.events("conversation.assigned"))

    assert api(running_hub, "POST", f"/v1/offers/{offer_id}/reject").status_code == 409

    # The agent replies; with no channel given it goes back on SMS, the channel the customer used.
    reply_headers = {**running_hub.api, "Idempotency-Key": f"reply-{offer_id}"}
    reply_url = running_hub.url + f"/v1/conversations/{conversation_id}/messages"
    reply_body = {"body": "Happy to help! What is the order number?", "agent_id": agent_id}
    sent = requests.post(reply_url, json=reply_body, headers=reply_headers, timeout=15)
    again = requests.post(reply_url, json=reply_body, headers=reply_headers, timeout=15)
    assert sent.status_code == 201, sent.text
    assert again.status_code == 201 and again.json()["id"] == sent.json()["id"]
    reply = sent.json()
    assert (reply["channel"], reply["direction"], reply["agent_id"]) == ("sms", "outbound", agent_id)
    sandbox = sandbox_url(running_hub)
    recorded = [
        r
        for r in requests.get(sandbox + "/sandbox/messages?provider=twilio", timeout=10).json()["messages"]
        if r["request"].get("To") == number
    ]
    assert len(recorded) == 1, "an Idempotency-Key repeat sends nothing"
    assert recorded[0]["request"]["Body"] == reply_body["body"]
    delivered = wait_for(
        lambda: next(
            (m for m in running_hub.messages(conversation_id) if m["id"] == reply["id"] and m["status"] == "delivered"),
            None,
        )
    )
    assert delivered["provider_message_id"] == recorded[0]["id"]
    wait_for(
        lambda: [e for e in receiver.events("message.status_updated") if e["data"]["message"]["id"] == reply["id"]]
    )
    resolved = api(running_hub, "POST", f"/v1/conversations/{conversation_id}/resolve")
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    after = api(running_hub, "GET", f"/v1/agents/{agent_id}").json()
    assert conversation_id not in after["conversation_ids"]
    assert after["load"].get("sms", 0) <= 1, "the freed slot may go straight to the backlog, never beyond capacity"
    wait_for(
        lambda: [
            e for e in receiver.events("conversation.resolved") if e["data"]["conversation"]["id"] == conversation_id
        ]
    )
    queues = api(running_hub, "GET", "/v1/queues").json()["data"]
    assert {q["queue"] for q in queues} >= {"general"}
    assert api(running_hub, "POST", f"/v1/agents/{agent_id}/status", {"status": "offline"}).status_code == 200
    assert api(running_hub, "DELETE", f"/v1/agents/{agent_id}").status_code == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "name"),
        ({"name": "x", "capacity": {"fax": 1}}, "fax"),
        ({"name": "x", "skills": {"billing": 11}}, "billing"),
        ({"name": "x", "unknown": True}, "unknown"),
    ],
)
def test_agent_profiles_are_validated(running_hub: RunningHub, body: dict[str, Any], fragment: str) -> None:
    response = api(running_hub, "PUT", "/v1/agents/someone", body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_unknown_things_are_404_and_bad_requests_400(running_hub: RunningHub) -> None:
    assert api(running_hub, "GET", "/v1/agents/nobody").status_code == 404
    assert api(running_hub, "POST", "/v1/agents/nobody/status", {"status": "available"}).status_code == 404
    assert api(running_hub, "POST", "/v1/agents/nobody/status", {"status": "sleeping"}).status_code == 400
    assert api(running_hub, "POST", "/v1/offers/ofr_nope/accept").status_code == 404
    assert api(running_hub, "POST", "/v1/conversations/conv_nope/resolve").status_code == 404
    assert api(running_hub, "POST", "/v1/conversations/conv_nope/transfer", {}).status_code == 400
    assert api(running_hub, "PUT", "/v1/agents/bad id!", {"name": "x"}).status_code in (400, 404)
    bad_hook = api(running_hub, "POST", "/v1/webhooks", {"url": "ftp://crm.example.com", "events": ["*"]})
    assert bad_hook.status_code == 400


def test_transfer_of_an_unassigned_conversation_is_409(running_hub: RunningHub) -> None:
    number = new_number()
    twilio_post(running_hub, inbound(number, "hi"))
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    response = api(
        running_hub, "POST", f"/v1/conversations/{customer['conversation_id']}/transfer", {"queue": "general"}
    )
    assert response.status_code == 409
