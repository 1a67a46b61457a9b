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
def test_an_agent_reply_costs_the_outbound_paths_budget_whatever_the_thread_length() -> None:
    """services/replies.py's docstring: with a key, PutItem (claim), 3 GetItem (conversation,
    customer, agent), then the outbound path (UpdateItem checkpoint, TransactWriteItems, Query for
    early statuses, SendMessageBatch), then UpdateItem (complete): the same for a long thread."""
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import reply

    calls = count_requests()
    conversation_id = ingest(sms("SMreply-budget-0")).conversation_id
    for index in range(1, 30):
        ingest(sms(f"SMreply-budget-{index}"))
    calls.clear()

    outcome = reply(conversation_id, "budget-key", body="On its way", channel="sms")

    assert outcome.status_code == 201, outcome.body
    assert calls == Counter(
        {
            "dynamodb.PutItem": 1,
            "dynamodb.GetItem": 3,
            "dynamodb.UpdateItem": 2,
            "dynamodb.TransactWriteItems": 1,
            "dynamodb.Query": 1,
            "sqs.SendMessageBatch": 1,
        }
    )


@pytest.mark.usefixtures("hub_with_providers")
def test_a_notification_costs_seven_requests() -> None:
    """services/notifications.py's docstring, for a known customer on the first channel."""
    from chalicelib.http.notifications import create_notification
    from chalicelib.services.ingest import ingest

    calls = count_requests()
    ingest(sms("SMntf-budget-0"))
    calls.clear()

    outcome = create_notification({"customer": {"phone": "+15017122661"}, "text": "Shipped", "channels": ["sms"]})

    assert outcome.status_code == 202, outcome.body
    assert sum(calls.values()) == 7 and "dynamodb.Scan" not in calls, calls
