"""Ingest stays within its AWS request budget (counted, not timed): the hot path is keyed
reads and writes only, and a known identity costs one read, one transaction and one enqueue."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.conftest import Hub
from tests.integration.test_ingest import sms


def count_requests() -> Counter[str]:
    from chalicelib import aws

    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}.{model.name}"] += 1

    aws.session().events.register("before-call", record)
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
