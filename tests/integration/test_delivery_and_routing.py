"""Status callbacks over HTTP and the routing worker's batch handling, against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Message
from tests.conftest import Hub
from tests.integration.test_ingest import sms
from tests.support.twilio_signature import sign_form

PUBLIC = "https://hub.example.com"


@pytest.fixture
def http(hub: Hub) -> Iterator[str]:
    """The Chalice app served over HTTP in this process, behind a public URL of PUBLIC."""
    from app import app
    from local.http_server import HttpServer

    server = HttpServer(app, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def outbound(conversation_id: str, customer_id: str, sid: str) -> Message:
    from chalicelib.domain.ids import id_datetime, new_id

    message_id = new_id("msg")
    return Message(
        id=message_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        channel=Channel.SMS,
        direction=Direction.OUTBOUND,
        body="Your order ships today",
        status=DeliveryStatus.QUEUED,
        created_at=id_datetime(message_id),
        provider="twilio",
        provider_message_id=sid,
    )


def post_status(http: str, params: dict[str, str], token: str = "test-twilio-token") -> requests.Response:
    path = "/webhooks/twilio/status"
    return requests.post(
        http + path,
        data=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_form(PUBLIC + path, params, token),
        },
        timeout=10,
    )


def test_status_callbacks_move_delivery_forward_and_never_back(hub: Hub, http: str) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest
    from chalicelib.store import thread

    ref = ingest(sms("SMin1"))
    sent = outbound(ref.conversation_id, ref.customer_id, "SMout1")
    thread.record_outbound(sent)

    def status_of() -> dict[str, Any]:
        messages, _ = customers.list_messages(ref.conversation_id, 50, None)
        return next(m for m in messages if m.id == sent.id).model_dump(mode="json")

    base = {"MessageSid": "SMout1", "AccountSid": "AC0", "To": "+15017122661", "From": "+14155238886"}
    assert post_status(http, {**base, "MessageStatus": "sent"}).status_code == 200
    assert status_of()["status"] == "sent"
    assert post_status(http, {**base, "MessageStatus": "undelivered", "ErrorCode": "30003"}).status_code == 200
    assert post_status(http, {**base, "MessageStatus": "sent"}).status_code == 200  # late, out of order

    final = status_of()
    assert final["status"] == "undelivered"
    assert final["error_code"] == "30003"
    assert customers.get_conversation(ref.conversation_id).outbound_count == 1


def test_forged_status_callback_changes_nothing(hub: Hub, http: str) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest
    from chalicelib.store import thread

    ref = ingest(sms("SMin2"))
    thread.record_outbound(outbound(ref.conversation_id, ref.customer_id, "SMout2"))

    response = post_status(http, {"MessageSid": "SMout2", "MessageStatus": "failed"}, token="wrong")

    assert response.status_code == 403
    messages, _ = customers.list_messages(ref.conversation_id, 50, None)
    assert [m.status for m in messages if m.direction is Direction.OUTBOUND] == [DeliveryStatus.QUEUED]


def test_malformed_status_callback_is_a_400_naming_the_field(hub: Hub, http: str) -> None:
    response = post_status(http, {"MessageSid": "SMout3", "MessageStatus": "exploded"})
    assert response.status_code == 400
    assert "MessageStatus" in response.json()["error"]["message"]


def test_routing_worker_marks_waiting_and_reports_only_the_poison_record(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest
    from handlers import routing
    from local.worker import LambdaContext, sqs_event

    good = ingest(sms("SMr1"))
    other = ingest(sms("SMr2", sender="+15017129999"))
    sqs = hub.client("sqs")
    sqs.send_message(
        QueueUrl=hub.routing_queue_url,
        MessageBody=json.dumps({"type": "inbound_message", "customer_id": "cus_x"}),
        MessageGroupId="cus_poison",
        MessageDeduplicationId="poison",
    )
    messages = hub.routing_messages()
    assert len(messages) == 3

    result = routing.handler(sqs_event(messages, "arn:aws:sqs:us-east-1:000000000000:routing.fifo"), LambdaContext("t"))

    poison_id = next(m["MessageId"] for m in messages if m["Attributes"]["MessageGroupId"] == "cus_poison")
    assert result == {"batchItemFailures": [{"itemIdentifier": poison_id}]}
    for ref in (good, other):
        assert customers.get_conversation(ref.conversation_id).status == "waiting"


def test_a_task_delivered_twice_is_harmless(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest
    from handlers import routing
    from local.worker import LambdaContext, sqs_event

    ref = ingest(sms("SMtwice"))
    [message] = hub.routing_messages()
    event = sqs_event([message], "arn:aws:sqs:us-east-1:000000000000:routing.fifo")

    first = routing.handler(event, LambdaContext("t"))
    waiting_since = customers.get_conversation(ref.conversation_id).waiting_since
    second = routing.handler(event, LambdaContext("t"))

    assert first == second == {"batchItemFailures": []}
    conversation = customers.get_conversation(ref.conversation_id)
    assert conversation.status == "waiting" and conversation.waiting_since == waiting_since


def test_a_status_that_arrives_before_its_message_is_recorded_is_applied_then(hub: Hub, http: str) -> None:
    from chalicelib.services import customers, delivery_status
    from chalicelib.services.ingest import ingest
    from chalicelib.store import thread

    ref = ingest(sms("SMin5"))
    early = {"MessageSid": "SMearly", "AccountSid": "AC0", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert post_status(http, {**early, "MessageStatus": "sent"}).status_code == 200
    assert post_status(http, early).status_code == 200

    sent = outbound(ref.conversation_id, ref.customer_id, "SMearly")
    thread.record_outbound(sent)
    delivery_status.catch_up("twilio", "SMearly")

    messages, _ = customers.list_messages(ref.conversation_id, 50, None)
    [stored] = [m for m in messages if m.id == sent.id]
    assert (stored.status, stored.error_code) == (DeliveryStatus.UNDELIVERED, "30005")
