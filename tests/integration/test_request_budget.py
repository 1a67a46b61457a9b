"""Ingest stays within its AWS request budget (counted, not timed): the hot path is keyed
reads and writes only, and a known identity costs one read, one transaction and one enqueue."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.conftest import Hub
from tests.integration.test_agent_replies import hub_with_providers, sandbox  # noqa: F401 - fixtures
from tests.integration.test_ingest import sms


def count_requests() -> Counter[str]:
    from chalicelib import aws

    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}.{model.name}"] += 1

    for service in ("dynamodb", "sqs"):  # the hub's clients (made now if not yet)
        aws.client(service).meta.events.register("before-call", record)
    return calls


def test_a_known_identity_costs_one_read_one_transaction_one_enqueue(hub: Hub) -> None:
    from chalicelib.services.ingest import ingest

    calls = count_requests()
    ingest(sms("SMbudget0"))
    calls.clear()

    for index in range(1, 6):
        ingest(sms(f"SMbudget{index}"))

    assert calls == Counter({"dynamodb.GetItem": 5, "dynamodb.TransactWriteItems": 5, "sqs.SendMessage": 5})


def test_a_new_identity_costs_the_same(hub: Hub) -> None:
    from chalicelib.services.ingest import ingest

    calls = count_requests()
    ingest(sms("SMnew", sender="+15017124444"))

    assert calls == Counter({"dynamodb.GetItem": 1, "dynamodb.TransactWriteItems": 1, "sqs.SendMessage": 1})


def test_a_retry_costs_one_more_read_and_never_scans(hub: Hub) -> None:
    from chalicelib.services.ingest import ingest

    calls = count_requests()
    ingest(sms("SMagain"))
    calls.clear()
    ingest(sms("SMagain"))

    assert calls == Counter({"dynamodb.GetItem": 2, "dynamodb.TransactWriteItems": 1, "sqs.SendMessage": 1})


@pytest.mark.usefixtures("hub_with_providers")
def test_an_agent_reply_costs_the_outbound_paths_budget_whatever_the_thread_length(hub: Hub) -> None:
    """services/replies.py's docstring: with a key, PutItem (claim), 3 GetItem (conversation,
    customer, agent), then the outbound path (UpdateItem checkpoint, TransactWriteItems, Query for
    early statuses, SendMessageBatch, and analytics' GetItem + TransactWriteItems for the first
    response), then UpdateItem (complete): the same for a long thread."""
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import reply

    calls = count_requests()
    conversation_id = ingest(sms("SMreply-budget-0")).conversation_id
    for index in range(1, 30):
        ingest(sms(f"SMreply-budget-{index}"))
    _routed(hub, calls)  # the cycle the reply answers is open
    calls.clear()

    outcome = reply(conversation_id, "budget-key", body="On its way", channel="sms")

    assert outcome.status_code == 201, outcome.body
    assert calls == Counter(
        {
            "dynamodb.PutItem": 1,
            "dynamodb.GetItem": 4,
            "dynamodb.UpdateItem": 2,
            "dynamodb.TransactWriteItems": 2,
            "dynamodb.Query": 1,
            "sqs.SendMessageBatch": 1,
        }
    )


@pytest.mark.usefixtures("hub_with_providers")
def test_a_notification_costs_eight_requests() -> None:
    """services/notifications.py's docstring, for a known customer on the first channel: seven,
    and analytics' GetItem of the cycle (a notification is no response: nothing is written)."""
    from chalicelib.http.notifications import create_notification
    from chalicelib.services.ingest import ingest

    calls = count_requests()
    ingest(sms("SMntf-budget-0"))
    calls.clear()

    outcome = create_notification({"customer": {"phone": "+15017122661"}, "text": "Shipped", "channels": ["sms"]})

    assert outcome.status_code == 202, outcome.body
    assert sum(calls.values()) == 8 and "dynamodb.Scan" not in calls, calls


def _routed(hub: Hub, calls: Counter[str]) -> Counter[str]:
    """Run the routing worker's step on the routing queue's messages, counting only that step."""
    from chalicelib.domain.routing_task import RoutingTask, routing_message
    from chalicelib.services import routing

    received = hub.routing_messages()
    sqs = hub.client("sqs")
    for message in received:  # done with (a FIFO group holds later messages while one is in flight)
        sqs.delete_message(QueueUrl=hub.routing_queue_url, ReceiptHandle=message["ReceiptHandle"])
    tasks = [routing_message.validate_json(message["Body"]) for message in received]
    calls.clear()
    for task in tasks:
        assert isinstance(task, RoutingTask)
        routing.handle_inbound(task)
    return Counter(calls)


@pytest.mark.usefixtures("hub_with_providers")
def test_a_message_to_a_bot_in_control_costs_five_requests(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """services/bots.py: the routing worker reads the conversation, customer, message and
    analytics cycle head (one BatchGetItem), queues the CRM's message.created (and counts it: one
    TransactWriteItems), reads the integration and queues its targeted event."""
    from chalicelib.services import integrations
    from chalicelib.services.ingest import ingest
    from tests.integration.routing_support import configure

    integration, _ = integrations.register("Order bot", "https://bots.example.com/hook")
    configure(monkeypatch, control={"default": integration.id})
    calls = count_requests()
    ingest(sms("SMbotbudget-1", body="hi"))
    _routed(hub, calls)  # the first message starts the cycle (the bot takes control)
    ingest(sms("SMbotbudget-2", body="where is my order?"))

    spent = _routed(hub, calls)

    assert spent == Counter(
        {
            "dynamodb.BatchGetItem": 1,
            "dynamodb.GetItem": 1,
            "dynamodb.TransactWriteItems": 1,
            "sqs.SendMessageBatch": 1,
            "sqs.SendMessage": 1,
        }
    ), spent


@pytest.mark.usefixtures("hub_with_providers")
def test_a_message_the_assistant_answers_costs_nine_requests(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """services/assistant.py: the worker's one BatchGetItem (conversation, customer, message,
    analytics head) and the CRM batch, the knowledge base's version (entries cached), then the
    outbound path's write, early-status query and event; the customer's message is counted with
    the head in hand (TransactWriteItems), the bot's answer with a GetItem + TransactWriteItems."""
    from chalicelib.services import knowledge
    from chalicelib.services.ingest import ingest
    from tests.integration.routing_support import configure

    knowledge.put_entry(
        "hours",
        {"questions": [{"language": "en", "text": "What are your opening hours?"}], "answers": {"en": "9 to 6."}},
    )
    configure(monkeypatch, control={"default": "assistant"})
    calls = count_requests()
    ingest(sms("SMasbudget-1", body="what are your opening hours?"))
    _routed(hub, calls)  # the first one starts the cycle and warms the knowledge base cache
    ingest(sms("SMasbudget-2", body="What are your opening hours?"))

    spent = _routed(hub, calls)

    assert sum(spent.values()) == 9 and "dynamodb.Scan" not in spent, spent
    assert spent["dynamodb.BatchGetItem"] == 1, spent
