"""Service levels through the real workers and SQS-delay timers: a short first-response target
warns then breaches at a CRM endpoint; an agent's reply in time meets it; a silent agent's
conversation is escalated to another agent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_crm_webhooks import Receiver, crm, receivers
from tests.integration.test_ingest import sms

__all__ = ["crm", "hub_with_providers", "receivers", "sandbox"]  # fixtures


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def events_of(receiver: Receiver, event_type: str) -> list[dict[str, Any]]:
    return [body for r in receiver.requests if (body := json.loads(r.body))["type"] == event_type]


def crm_endpoint(receivers: Callable[[], Receiver]) -> Receiver:
    from chalicelib.services import webhooks

    endpoint = receivers()
    webhooks.register(
        endpoint.url, ["sla.warning", "sla.breached", "conversation.escalated", "conversation.transferred"]
    )
    return endpoint


@pytest.mark.usefixtures("hub_with_providers")
def test_a_short_first_response_target_warns_then_breaches(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services.ingest import ingest

    endpoint = crm_endpoint(receivers)
    configure(
        monkeypatch, sla=[{"name": "fast", "first_response_seconds": 2, "warning_at": 0.5, "resolution_seconds": 600}]
    )
    workers = Workers(crm)

    first = ingest(sms("SMsla-1", body="hello?"))
    workers.drain(until=lambda: bool(events_of(endpoint, "sla.breached")), timeout=25)

    [warning] = events_of(endpoint, "sla.warning")
    [breach] = events_of(endpoint, "sla.breached")
    assert warning["data"]["target"] == breach["data"]["target"] == "first_response"
    assert breach["data"]["policy"] == "fast"
    clocks = conversation(first.conversation_id).sla.clocks
    assert clocks["first_response"].status == "missed"
    assert clocks["resolution"].status == "active"


def test_an_agent_reply_in_time_meets_the_target_and_a_bot_never_does(
    hub_with_providers: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import AGENT

    configure(monkeypatch, sla=[{"name": "calm", "first_response_seconds": 600, "resolution_seconds": 3600}])
    make_agent("closer")
    workers = Workers(hub_with_providers)
    first = ingest(sms("SMsla-ok", body="hello?"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)

    answer = send_reply(first.conversation_id, {"agent_id": AGENT, "body": "Hi, how can I help?"})
    assert answer.status_code == 201
    routing.resolve(first.conversation_id)

    clocks = conversation(first.conversation_id).sla.clocks
    assert clocks["first_response"].status == "met"
    assert clocks["resolution"].status == "met"


@pytest.mark.usefixtures("hub_with_providers")
@pytest.mark.parametrize(("escalation", "priority"), [("requeue", 5), ("raise_priority", 7)])
def test_a_silent_agents_conversation_is_escalated_to_another_agent(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch, escalation: str, priority: int
) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    endpoint = crm_endpoint(receivers)
    configure(
        monkeypatch,
        sla=[{"name": "watched", "first_response_seconds": 600, "escalate_after_seconds": 1, "escalation": escalation}],
    )
    make_agent("silent")
    workers = Workers(crm)
    first = ingest(sms("SMsla-esc", body="hello?"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)
    make_agent("backup")

    workers.drain(
        until=lambda: (
            conversation(first.conversation_id).assigned_agent_id is None
            and conversation(first.conversation_id).offer_id is not None
        ),
        timeout=25,
    )

    workers.drain(until=lambda: bool(events_of(endpoint, "conversation.escalated")), timeout=10)
    [escalated] = events_of(endpoint, "conversation.escalated")
    assert escalated["data"]["agent_id"] == "silent" and escalated["data"]["action"] == escalation
    offer = routing.get_offer(conversation(first.conversation_id).offer_id)
    assert offer["agent_id"] == "backup", "re-queued to another agent"
    [moved] = events_of(endpoint, "conversation.transferred")
    assert moved["data"]["task"]["priority"] == priority and moved["data"]["from_agent_id"] == "silent"
