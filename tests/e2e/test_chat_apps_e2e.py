"""The chat apps through `make run`'s stack over HTTP: every sample payload from the providers'
documentation is accepted signed and refused forged, WhatsApp through Meta joins the same customer
as SMS from that number, and agent replies reach each app's emulator in the sandbox."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from local import send
from tests.e2e.conftest import RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post, wait_for
from tests.e2e.test_routing_e2e import api, sandbox_url

EVENTS = Path(__file__).resolve().parents[2] / "events"
# Sample directory → the local.send channel that signs for it (Meta's one route takes all three).
SAMPLES = {"meta": "messenger", "line": "line", "wechat": "wechat", "telegram": "telegram"}


def samples() -> list[tuple[str, Path]]:
    found = []
    for directory, channel in SAMPLES.items():
        for path in sorted((EVENTS / directory).glob("*")):
            # WeChat's safe-mode samples are refused on purpose (tests/integration/test_wechat_channel.py)
            if path.suffix in (".json", ".xml") and b"<Encrypt>" not in path.read_bytes():
                found.append((channel, path))
    return found


@pytest.mark.parametrize(("channel", "path"), samples(), ids=lambda value: getattr(value, "name", value))
def test_every_documented_payload_is_accepted_when_signed(running_hub: RunningHub, channel: str, path: Path) -> None:
    payload = path.read_bytes()
    assert send.send_chat_app(running_hub.url, channel, None, "", None, payload) == 0
    # and twice: a provider retry is acknowledged the same way
    assert send.send_chat_app(running_hub.url, channel, None, "", None, payload) == 0


@pytest.mark.parametrize("path", ["/webhooks/meta", "/webhooks/telegram", "/webhooks/line"])
def test_forged_chat_app_webhooks_are_refused(running_hub: RunningHub, path: str) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "X-Telegram-Bot-Api-Secret-Token": "guess",
        "x-line-signature": "AAAA",
    }
    body = (EVENTS / "line" / "text_message.json").read_bytes()
    response = requests.post(running_hub.url + path, data=body, headers=headers, timeout=10)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def customer(hub: RunningHub, **query: str) -> dict[str, Any] | None:
    found = hub.get("/v1/customers", params=query).json()["data"]
    return found[0] if found else None


def test_whatsapp_through_meta_joins_the_sms_customer_and_replies_go_back_through_meta(
    running_hub: RunningHub,
) -> None:
    number = new_number()
    assert twilio_post(running_hub, inbound(number, "Hi by SMS")).status_code == 200
    assert send.send_chat_app(running_hub.url, "whatsapp-cloud", number, "Now on WhatsApp", "Ada", None) == 0

    joined = wait_for(lambda: customer(running_hub, phone=number))
    messages = wait_for(lambda: len(running_hub.messages(joined["conversation_id"])) == 2 or None)
    assert messages
    thread = running_hub.messages(joined["conversation_id"])
    assert [(m["channel"], m["provider"]) for m in thread] == [("sms", "twilio"), ("whatsapp", "meta")]

    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    assert api(running_hub, "PUT", f"/v1/agents/{agent_id}", {"name": "Grace"}).ok
    reply = api(
        running_hub,
        "POST",
        f"/v1/conversations/{joined['conversation_id']}/messages",
        {"agent_id": agent_id, "body": "Hello from the agent"},
    )
    assert reply.status_code == 201, reply.text
    sent = reply.json()
    assert (sent["channel"], sent["provider"]) == ("whatsapp", "meta")

    sandbox = sandbox_url(running_hub)
    records = requests.get(f"{sandbox}/sandbox/messages", params={"provider": "meta"}, timeout=10).json()["messages"]
    assert any(r["id"] == sent["provider_message_id"] for r in records)

    def delivered() -> bool:
        stored = running_hub.messages(joined["conversation_id"])
        return any(m["id"] == sent["id"] and m["status"] in ("delivered", "read") for m in stored)

    assert wait_for(delivered)  # the emulator's signed receipt came back through /webhooks/meta


@pytest.mark.parametrize(
    ("channel", "sender"),
    [
        ("messenger", "71" + uuid.uuid4().hex[:12].translate(str.maketrans("abcdef", "123456"))),
        ("line", "U" + uuid.uuid4().hex),
        ("wechat", "oWX" + uuid.uuid4().hex[:25]),
        ("telegram", str(uuid.uuid4().int % 10**9)),
    ],
)
def test_a_chat_app_customer_is_found_by_their_id_and_answered_on_that_app(
    running_hub: RunningHub, channel: str, sender: str
) -> None:
    assert send.send_chat_app(running_hub.url, channel, sender, f"Hello on {channel}", "Ada", None) == 0
    found = wait_for(lambda: customer(running_hub, channel=channel, address=sender))

    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    assert api(running_hub, "PUT", f"/v1/agents/{agent_id}", {"name": "Grace"}).ok
    reply = api(
        running_hub,
        "POST",
        f"/v1/conversations/{found['conversation_id']}/messages",
        {"agent_id": agent_id, "body": "An agent here"},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["channel"] == channel
    provider = "meta" if channel == "messenger" else channel
    sandbox = sandbox_url(running_hub)
    records = requests.get(f"{sandbox}/sandbox/messages", params={"provider": provider}, timeout=10).json()
    assert any(sender in str(record) and "An agent here" in str(record) for record in records["messages"])
