"""The event history end to end against the emulator: events raised by the hub, taken from the CRM
events queue by the worker as Lambda drives it, written through the emulator's Firehose to its S3
as NDJSON lines under `events/dt=YYYY-MM-DD/` (the layout the Glue table projects), once per
event message: never for a delivery retry or an integration's copy. A redelivered message writes
a second line with the same id (at least once: readers deduplicate on it). With the setting blank
nothing is put and CRM delivery goes on; when Firehose refuses, the record fails before any CRM
sees the event, and the redelivery completes both."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Hub
from tests.integration.test_crm_webhooks import Receiver, drain
from tests.integration.test_ingest import sms


@pytest.fixture
def crm(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub, with CRM delivery retries that come back at once."""
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "2")
    return hub


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


def history(hub: Hub) -> list[tuple[str, bytes]]:
    """Every line in the history bucket, with the key of the object it is in."""
    s3 = hub.client("s3")
    bucket = hub.resources["EVENT_LOG_BUCKET"]
    lines: list[tuple[str, bytes]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for listed in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read()
            assert body.endswith(b"\n"), "newline-delimited, the last line too"
            lines += [(listed["Key"], raw + b"\n") for raw in body.split(b"\n")[:-1]]
    return lines


def records(hub: Hub) -> list[dict[str, Any]]:
    return [json.loads(raw) for _, raw in history(hub)]


def firehose_calls(hub: Hub) -> list[str]:
    from chalicelib import aws

    calls: list[str] = []
    aws.session().events.register("before-call.firehose", lambda model, **_: calls.append(model.name))
    return calls


def utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


def handle_once(hub: Hub) -> tuple[list[dict[str, Any]], set[str]]:
    """Receive what is on the CRM events queue and run the worker on it as Lambda would, deleting
    nothing: returns the messages and the ids of those that failed (all of them when the whole
    batch failed, which Powertools reports by failing the invocation)."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from handlers.crm_events import handler
    from local.worker import LambdaContext, sqs_event

    sqs = hub.client("sqs")
    url, arn = hub.resources["CRM_EVENTS_QUEUE_URL"], hub.resources["CRM_EVENTS_QUEUE_ARN"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    try:
        response = handler(sqs_event(messages, arn), LambdaContext("crm"))
    except BatchProcessingError:
        return messages, {message["MessageId"] for message in messages}
    return messages, {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}


def redeliver(hub: Hub, message: dict[str, Any]) -> None:
    """SQS makes a message it handed out visible again (the worker failed, or its delete was lost)."""
    hub.client("sqs").change_message_visibility(
        QueueUrl=hub.resources["CRM_EVENTS_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )


def route_everything(hub: Hub) -> None:
    from chalicelib.domain.routing_task import RoutingTask, routing_message
    from chalicelib.services import routing

    for message in hub.routing_messages():
        task = routing_message.validate_json(message["Body"])
        assert isinstance(task, RoutingTask)
        routing.handle_inbound(task)


def test_each_event_becomes_one_line_under_its_date_partition(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.ids import new_id
    from chalicelib.services import events, routing, webhooks
    from chalicelib.services.ingest import ingest

    # Given a CRM endpoint for every event that fails its first delivery (so one delivery is retried)
    receiver = receivers()
    receiver.fail = 1
    webhooks.register(receiver.url, ["*"])
    first_day = utc_day()

    # When a customer writes by SMS, the message is routed, an agent resolves the conversation,
    # an event goes to an integration only, and the CRM events worker drains its queue
    stored = ingest(sms("SMhistory1", body="Where is order 42?"))
    route_everything(crm)
    routing.resolve(stored.conversation_id)
    events.emit_to_integration(new_id("int"), "message.created", {"message": {"id": "msg_x"}}, "msg_x")
    drained = drain(crm)
    last_day = utc_day()

    # Then every event sent to the CRM is in the history exactly once, as its line
    assert drained.failed == []
    delivered = {request.headers["webhook-id"]: request for request in receiver.requests if request.answer == "ok"}
    assert len([r for r in receiver.requests if r.answer == "fail"]) == 1, "one delivery was retried"
    written = history(crm)
    ids = [json.loads(raw)["id"] for _, raw in written]
    assert sorted(ids) == sorted(delivered), "once per event: not for the retry, nor the integration's event"
    for _, raw in written:
        record = json.loads(raw)
        assert record["timestamp"].endswith("Z")
        assert raw == b'{"id":"' + record["id"].encode() + b'",' + delivered[record["id"]].body[1:] + b"\n"
    types = {json.loads(raw)["type"] for _, raw in written}
    assert {"customer.created", "message.created", "conversation.queued", "conversation.resolved"} <= types

    # And each object is under the UTC day Firehose received it, named as Firehose names objects
    stream = crm.resources["EVENT_LOG_STREAM"]
    for key, _ in written:
        match = re.fullmatch(
            rf"events/dt=(\d{{4}}-\d{{2}}-\d{{2}})/{re.escape(stream)}-1-[\d-]{{19}}-[0-9a-f-]{{36}}", key
        )
        assert match, key
        assert first_day <= match.group(1) <= last_day

    # And the JSON paths the README's Athena queries read are there
    by_type = {record["type"]: record for record in records(crm)}
    message = by_type["message.created"]["data"]["message"]
    assert (message["channel"], message["direction"]) == ("sms", "inbound")
    resolved = by_type["conversation.resolved"]["data"]
    assert resolved["conversation"]["id"] == stored.conversation_id
    assert resolved["conversation"]["last_channel"] == "sms"


def test_a_redelivered_event_message_writes_a_second_line_with_the_same_id(
    crm: Hub, receivers: Callable[[], Receiver]
) -> None:
    from chalicelib.services import events, webhooks

    # Given an endpoint and an event on the CRM events queue
    receiver = receivers()
    webhooks.register(receiver.url, ["customer.updated"])
    event = events.emit("customer.updated", {"customer": {"id": "cus_1"}}, key="cus_1:v2")

    # When the worker handles the message, but SQS delivers it again (the delete was lost)
    [message], failed = handle_once(crm)
    assert failed == set()
    redeliver(crm, message)
    drain(crm)

    # Then the history has two identical lines with the event's id: readers deduplicate on it,
    # as the CRM deduplicates its two deliveries on the same webhook-id
    written = [raw for _, raw in history(crm)]
    assert len(written) == 2 and written[0] == written[1]
    assert {json.loads(raw)["id"] for raw in written} == {event.id}
    assert [request.headers["webhook-id"] for request in receiver.requests] == [event.id, event.id]


def test_with_the_setting_blank_nothing_is_put_and_delivery_goes_on(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given no stream configured
    monkeypatch.setenv("EVENT_LOG_STREAM", "")
    calls = firehose_calls(crm)
    receiver = receivers()
    webhooks.register(receiver.url, ["*"])

    # When an event is emitted and the worker runs
    event = events.emit("customer.updated", {"customer": {"id": "cus_1"}}, key="cus_1:v3")
    drained = drain(crm)

    # Then the CRM got it, and nothing went to Firehose
    assert drained.failed == []
    assert [request.headers["webhook-id"] for request in receiver.requests] == [event.id]
    assert calls == []
    assert history(crm) == []


def test_when_firehose_refuses_the_record_fails_before_any_crm_sees_the_event(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given a stream that does not exist (deleted, or a wrong name)
    stream = crm.resources["EVENT_LOG_STREAM"]
    monkeypatch.setenv("EVENT_LOG_STREAM", "no-such-stream")
    receiver = receivers()
    webhooks.register(receiver.url, ["*"])
    event = events.emit("customer.updated", {"customer": {"id": "cus_1"}}, key="cus_1:v4")

    # When the worker handles the event
    [message], failed = handle_once(crm)

    # Then the record failed (SQS will deliver it again) and no CRM got the event yet
    assert failed == {message["MessageId"]}
    assert receiver.requests == [] and history(crm) == []

    # When the stream is back and SQS delivers the message again
    monkeypatch.setenv("EVENT_LOG_STREAM", stream)
    redeliver(crm, message)
    drained = drain(crm)

    # Then the event is in the history once and the CRM got it once
    assert drained.failed == []
    assert [record["id"] for record in records(crm)] == [event.id]
    assert [request.headers["webhook-id"] for request in receiver.requests] == [event.id]
