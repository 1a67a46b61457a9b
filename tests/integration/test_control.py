"""Who controls a conversation, against the AWS emulator with the real workers: a bot integration
takes a queue's new conversations, gets the customer's messages as signed webhooks, answers as a
bot, and passes control to humans with metadata; racing changes leave one controller."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.domain.replies import Refused
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_crm_webhooks import Receiver, assert_signed, crm, receivers
from tests.integration.test_ingest import sms

__all__ = ["crm", "hub_with_providers", "receivers", "sandbox"]  # fixtures


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def bot_in_control(monkeypatch: pytest.MonkeyPatch, bot: Receiver) -> tuple[Any, str]:
    """An integration that takes every new conversation of the general queue on SMS."""
    from chalicelib.services import integrations

    integration, secret = integrations.register(
        "Order bot", bot.url, ["message.created", "conversation.control_changed"]
    )
    configure(monkeypatch, control={"queues": {"general": {"channels": {"sms": integration.id}}}})
    return integration, secret


@pytest.mark.usefixtures("hub_with_providers")
def test_a_bot_takes_the_conversation_answers_and_hands_it_to_humans_with_context(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.control import ControlAction, ControlRequest
    from chalicelib.http.replies import send_reply
    from chalicelib.services import control, webhooks
    from chalicelib.services.ingest import ingest

    bot, desk = receivers(), receivers()
    integration, secret = bot_in_control(monkeypatch, bot)
    webhooks.register(desk.url, ["offer.created"])
    make_agent("grace")
    workers = Workers(crm)
    workers.drain()

    # When a customer writes
    first = ingest(sms("SMbot-1", body="Where is my order?"))
    workers.drain(until=lambda: any(json.loads(r.body)["type"] == "message.created" for r in bot.requests))

    # Then the bot controls the conversation, no routing task exists, and the bot got the message, signed
    held = conversation(first.conversation_id)
    assert held.control.controller.integration_id == integration.id
    assert (held.status, held.task_queue, held.offer_id) == ("open", None, None)
    [delivered] = [r for r in bot.requests if json.loads(r.body)["type"] == "message.created"]
    assert_signed(delivered, secret)
    assert json.loads(delivered.body)["data"]["message"]["body"] == "Where is my order?"

    # And the bot answers as a bot, through the one outbound path
    answer = send_reply(first.conversation_id, {"sender": {"type": "bot", "id": integration.id}, "body": "Order 42?"})
    assert answer.status_code == 201, answer.body
    assert answer.body["agent_id"] is None

    # When it passes control to humans with what it collected
    control.change(
        first.conversation_id,
        ControlRequest(
            action=ControlAction.PASS,
            to="humans",
            by=integration.id,
            reason="customer wants a refund",
            metadata={"summary": "refund for order 42", "fields": {"order": "42"}},
        ),
    )
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)

    # Then the conversation is offered to an agent, and the handover is in the control state and the thread
    handed = conversation(first.conversation_id)
    assert handed.control.controller.kind == "humans"
    assert handed.control.metadata == {"summary": "refund for order 42", "fields": {"order": "42"}}
    assert handed.status == "waiting" and handed.offer_id is not None
    from chalicelib.services import customers

    notes = [m.body for m in customers.list_messages(first.conversation_id, 50, None)[0] if m.direction == "event"]
    assert any(f"from {integration.id} to humans" in note for note in notes)
    # And the offer the agent gets carries the handoff packet: the whole cycle and what the bot collected
    workers.drain(until=lambda: bool(desk.requests))
    [offered] = [json.loads(r.body) for r in desk.requests]
    carried = offered["data"]["handoff"]
    assert [m["body"] for m in carried["messages"] if m["direction"] != "event"] == ["Where is my order?", "Order 42?"]
    assert carried["control"]["fields"] == {"order": "42"}
    assert not [r for r in bot.requests if json.loads(r.body)["type"] == "offer.created"], (
        "the bot hears what it asked for"
    )
    from chalicelib.services import handoff

    packet = handoff.packet(first.conversation_id)
    assert [m["body"] for m in packet["messages"] if m["direction"] != "event"] == ["Where is my order?", "Order 42?"]
    assert packet["control"]["summary"] == "refund for order 42" and packet["control"]["fields"] == {"order": "42"}
    assert packet["identities"] == {"phone": ["+15017122661"]}
    assert packet["channels"]["sms"]["window_open"] is True and packet["channels"]["sms"]["opted_out_at"] is None
    assert packet["channels"]["whatsapp"]["window_open"] is False  # never wrote on WhatsApp
    assert packet["truncated"] is False
    # And a bot that no longer controls it cannot answer
    late = send_reply(first.conversation_id, {"sender": {"type": "bot", "id": integration.id}, "body": "still me"})
    assert (late.status_code, late.body["error"]["code"]) == (422, "not_in_control")


def test_racing_pass_and_take_leave_one_controller(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.control import ControlAction, ControlRequest
    from chalicelib.services import control
    from chalicelib.services.ingest import ingest

    bot, other = receivers(), receivers()
    integration, _ = bot_in_control(monkeypatch, bot)
    from chalicelib.services import integrations

    second, _ = integrations.register("Returns bot", other.url)
    workers = Workers(crm)
    first = ingest(sms("SMrace-1", body="hello"))
    workers.drain(until=lambda: conversation(first.conversation_id).control is not None)
    start = conversation(first.conversation_id).control.version

    requests = [
        ControlRequest(action=ControlAction.PASS, to=second.id, by=integration.id, reason="returns"),
        ControlRequest(action=ControlAction.TAKE, by="humans", reason="an agent stepped in"),
        ControlRequest(action=ControlAction.PASS, to="humans", by=integration.id, reason="give up"),
    ] * 2
    outcomes: list[Any] = []
    barrier = threading.Barrier(len(requests))

    def act(request: ControlRequest) -> None:
        barrier.wait()
        try:
            outcomes.append(control.change(first.conversation_id, request))
        except Refused as refused:
            outcomes.append(refused.code)

    threads = [threading.Thread(target=act, args=(request,)) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    final = conversation(first.conversation_id).control
    winners = [outcome for outcome in outcomes if not isinstance(outcome, str)]
    # Every change that was written moved the version by one, in order: no change was lost or doubled
    assert final.version == start + len(winners)
    assert all(
        code in {"control_changed", "not_in_control", "already_in_control"}
        for code in outcomes
        if isinstance(code, str)
    )
    assert final.controller == winners[-1].control.controller if winners else True
    assert len(winners) >= 1


def test_a_conversation_whose_bot_was_deleted_goes_to_humans(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import integrations
    from chalicelib.services.ingest import ingest

    bot = receivers()
    integration, _ = bot_in_control(monkeypatch, bot)
    make_agent("grace")
    workers = Workers(crm)
    first = ingest(sms("SMgone-1", body="hello"))
    workers.drain(until=lambda: conversation(first.conversation_id).control is not None)
    integrations.delete(integration.id)

    ingest(sms("SMgone-2", body="anyone there?"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)

    held = conversation(first.conversation_id)
    assert held.control.controller.kind == "humans" and "gone" in held.control.reason


def test_control_changes_are_refused_clearly(crm: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.domain.control import ControlAction, ControlRequest
    from chalicelib.services import control
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    first = ingest(sms("SMrefuse-1", body="hello"))

    with pytest.raises(Refused) as missing:
        control.change("conv_01H0000000000000000000000", ControlRequest(action=ControlAction.TAKE))
    assert missing.value.code == "not_found"
    with pytest.raises(Refused) as offered:
        control.change(first.conversation_id, ControlRequest(action=ControlAction.ACCEPT, by="int_x"))
    assert offered.value.code == "not_offered"
    with pytest.raises(Refused) as own:
        control.change(first.conversation_id, ControlRequest(action=ControlAction.PASS, to="humans"))
    assert own.value.code == "already_in_control"
