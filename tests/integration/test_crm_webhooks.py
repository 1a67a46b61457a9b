"""CRM webhooks end to end against the AWS emulator: endpoints stored in the table, events queued
on the CRM events queue, the worker driven as Lambda drives it, deliveries to loopback receivers
that record what they get and fail or hang on demand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import Hub

# --- A CRM endpoint on loopback --------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: str  # "ok", "fail" or "hang"
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """Records every POST; answers 500 to the next `fail` requests and never answers the next
    `hang` ones (until stopped), then answers 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.fail = 0
        self.hang = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    if receiver.hang:
                        receiver.hang -= 1
                        answer = "hang"
                    elif receiver.fail:
                        receiver.fail -= 1
                        answer = "fail"
                    else:
                        answer = "ok"
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, answer))
                if answer == "hang":
                    receiver._release.wait(5)
                    return
                status, text = (500, b"database is down") if answer == "fail" else (200, b"ok")
                self.send_response(status)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/crm/hooks"

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def crm(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub, with retries that come back at once and the default timeout and attempts."""
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "2")
    monkeypatch.delenv("WEBHOOK_MAX_ATTEMPTS", raising=False)
    return hub


# --- Driving the worker the way Lambda does -----------------------------------------------------


@dataclass
class Drained:
    handled: int = 0
    failed: list[str] = field(default_factory=list)


def _queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesDelayed"])


def process_once(hub: Hub, result: Drained | None = None, lambda_seconds: int = 30) -> Drained:
    """One receive → handler → delete round on the CRM events queue (a `lambda_seconds` invocation)."""
    from handlers.crm_events import handler
    from local.worker import LambdaContext, sqs_event

    result = result or Drained()
    sqs = hub.client("sqs")
    url, arn = hub.resources["CRM_EVENTS_QUEUE_URL"], hub.resources["CRM_EVENTS_QUEUE_ARN"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    if not messages:
        return result
    response = handler(sqs_event(messages, arn), LambdaContext("crm", timeout_seconds=lambda_seconds))
    failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
        )
    result.handled += len(messages)
    result.failed.extend(sorted(failed))
    return result


def drain(hub: Hub, timeout: float = 15) -> Drained:
    """Process the queue until nothing is visible or delayed (failed records stay invisible)."""
    sqs = hub.client("sqs")
    url = hub.resources["CRM_EVENTS_QUEUE_URL"]
    result = Drained()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        visible, delayed = _queue_counts(sqs, url)
        if not visible and not delayed:
            return result
        if visible:
            process_once(hub, result)
        else:
            time.sleep(0.1)
    raise AssertionError("the CRM events queue did not drain in time")


def dead_letters(hub: Hub) -> list[dict[str, Any]]:
    sqs = hub.client("sqs")
    url = hub.resources["CRM_EVENTS_QUEUE_DLQ_URL"]
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        found.extend(json.loads(message["Body"]) for message in batch)


def spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1 from the spec: base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
    key = base64-decoded secret after "whsec_"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def assert_signed(request: Received, secret: str) -> None:
    from standardwebhooks import Webhook

    signature = spec_signature(
        secret, request.headers["webhook-id"], request.headers["webhook-timestamp"], request.body
    )
    assert hmac.compare_digest(request.headers["webhook-signature"], signature)
    assert Webhook(secret).verify(request.body, request.headers) == json.loads(request.body)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody-home"


def record_sqs_calls(operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the hub's SQS client makes from now on."""
    from chalicelib import aws

    calls: list[dict[str, Any]] = []
    aws.client("sqs").meta.events.register(
        f"provide-client-params.sqs.{operation}", lambda params, **_: calls.append(json.loads(json.dumps(params)))
    )
    return calls


# --- Endpoints ----------------------------------------------------------------------------------


def test_endpoints_are_registered_listed_read_and_deleted(crm: Hub) -> None:
    from chalicelib.services import webhooks
    from chalicelib.services.errors import NotFound

    # Given two endpoints, one with a secret of the business's choosing
    chosen = "whsec_" + base64.b64encode(b"s" * 40).decode()
    first, first_secret = webhooks.register("https://crm.example.com/hooks", ["*"], description="main CRM")
    second, second_secret = webhooks.register("http://127.0.0.1:9/x", ["message.created"], secret=chosen)

    # Then a secret is generated only where none was given, and both are stored
    assert first_secret.startswith("whsec_") and len(base64.b64decode(first_secret[6:])) == 32
    assert second_secret == chosen
    listed = webhooks.list_endpoints()
    assert [(e.id, e.url, e.events, e.description) for e in listed] == [
        (first.id, "https://crm.example.com/hooks", ["*"], "main CRM"),
        (second.id, "http://127.0.0.1:9/x", ["message.created"], None),
    ]
    assert webhooks.get_endpoint(second.id).secret == chosen

    # When one is deleted
    webhooks.delete(first.id)

    # Then it is gone, and deleting or reading it again is NotFound
    assert [e.id for e in webhooks.list_endpoints()] == [second.id]
    with pytest.raises(NotFound):
        webhooks.get_endpoint(first.id)
    with pytest.raises(NotFound):
        webhooks.delete(first.id)
    # And ids that register never makes are NotFound without a lookup (DynamoDB caps key sizes)
    for bogus in ("wh_nope", "x" * 5000, "WH#" + second.id):
        with pytest.raises(NotFound):
            webhooks.get_endpoint(bogus)


def test_invalid_endpoints_are_refused_and_nothing_is_stored(crm: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import webhooks
    from chalicelib.services.errors import InvalidRequest

    monkeypatch.delenv("ALLOW_INSECURE_WEBHOOK_URLS", raising=False)
    short_secret = "whsec_" + base64.b64encode(b"s" * 16).decode()
    for url, events, secret, message in [
        ("http://crm.example.com/hooks", ["*"], None, "https"),
        ("mailto:crm@example.com", ["*"], None, "http or https"),
        ("https://crm.example.com/hooks", [], None, "non-empty"),
        ("https://crm.example.com/hooks", ["message.sent"], None, "unknown event type 'message.sent'"),
        ("https://crm.example.com/hooks", ["*"], "hunter2", "whsec_"),
        ("https://crm.example.com/hooks", ["*"], short_secret, "24 to 64"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            webhooks.register(url, events, secret=secret)
    assert webhooks.list_endpoints() == []
    assert crm.item_count() == 0


# --- Delivery -----------------------------------------------------------------------------------


def test_an_event_fans_out_only_to_subscribed_endpoints_signed(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.domain.events import payload
    from chalicelib.services import events, webhooks

    # Given three endpoints: one for messages, one for everything, one for customers only
    messages_crm, everything_crm, customers_crm = receivers(), receivers(), receivers()
    _, messages_secret = webhooks.register(messages_crm.url, ["message.created", "message.status_updated"])
    _, everything_secret = webhooks.register(everything_crm.url, ["*"])
    webhooks.register(customers_crm.url, ["customer.created"])

    # When a message.created event is emitted and the worker runs
    event = events.emit("message.created", {"message_id": "msg_1", "body": "Hi, order #42?"}, key="msg_1")
    drained = drain(crm)

    # Then the two subscribed endpoints got it once each, signed, and the third got nothing
    assert drained.handled == 1 and drained.failed == []
    assert customers_crm.requests == []
    for receiver, secret in ((messages_crm, messages_secret), (everything_crm, everything_secret)):
        [request] = receiver.requests
        assert request.path == "/crm/hooks"
        assert request.body == payload(event)
        assert json.loads(request.body) == {
            "type": "message.created",
            "timestamp": event.timestamp.isoformat().replace("+00:00", "Z"),
            "data": {"body": "Hi, order #42?", "message_id": "msg_1"},
        }
        assert request.headers["webhook-id"] == event.id
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "omnihub-webhooks/1"
        assert_signed(request, secret)
    # And each endpoint's stats show the success
    for endpoint in webhooks.list_endpoints():
        delivered = endpoint.url != customers_crm.url
        assert (endpoint.last_success_at is not None) is delivered
        assert endpoint.consecutive_failures == 0


def test_failed_deliveries_are_retried_with_backoff_under_the_same_webhook_id(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given an endpoint that answers 500 twice, then 200, and retries 0 to 2 s apart
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "1")
    receiver = receivers()
    receiver.fail = 2
    endpoint, secret = webhooks.register(receiver.url, ["conversation.assigned"])
    retries = record_sqs_calls("SendMessageBatch")

    # When an event is emitted and the worker runs until the queue is empty
    event = events.emit("conversation.assigned", {"conversation_id": "conv_1", "agent_id": "agt_1"}, key="asg_1")
    drained = drain(crm)

    # Then the endpoint got three attempts of one event, each validly signed
    assert [r.answer for r in receiver.requests] == ["fail", "fail", "ok"]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.id}
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert_signed(request, secret)
    # And the two retries were their own delayed messages: attempt 2 after 0-1 s, attempt 3 after 1-2 s
    entries = [entry for call in retries for entry in call["Entries"]]
    assert [json.loads(e["MessageBody"])["attempt"] for e in entries] == [2, 3]
    assert 0 <= entries[0]["DelaySeconds"] <= 1 and 1 <= entries[1]["DelaySeconds"] <= 2
    assert drained.handled == 3 and drained.failed == []
    # And the stats were reset by the success
    stored = webhooks.get_endpoint(endpoint.id)
    assert stored.consecutive_failures == 0
    assert stored.last_success_at is not None and stored.last_failure_at is not None
    assert stored.last_error == "HTTP 500: database is down"
    assert dead_letters(crm) == []


def test_a_timeout_counts_as_a_failed_attempt(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given an endpoint that does not answer its first request, and a 0.5 s timeout
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0.5")
    receiver = receivers()
    receiver.hang = 1
    endpoint, secret = webhooks.register(receiver.url, ["offer.created"])

    # When an event is delivered
    started = time.monotonic()
    events.emit("offer.created", {"offer_id": "off_1"}, key="off_1")
    process_once(crm)
    first_pass = time.monotonic() - started

    # Then the attempt gave up after the timeout and recorded it
    assert first_pass < 2
    stored = webhooks.get_endpoint(endpoint.id)
    assert stored.consecutive_failures == 1
    assert stored.last_error is not None and stored.last_error.startswith("timeout")

    # And the retry delivered it
    drain(crm)
    assert [r.answer for r in receiver.requests] == ["hang", "ok"]
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]
    assert_signed(receiver.requests[1], secret)
    assert webhooks.get_endpoint(endpoint.id).consecutive_failures == 0


def test_after_the_last_attempt_the_delivery_is_dead_lettered(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given an endpoint that always fails, and three attempts
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    receiver = receivers()
    receiver.fail = 100
    endpoint, _ = webhooks.register(receiver.url, ["conversation.resolved"])

    # When an event is emitted and the worker runs
    event = events.emit("conversation.resolved", {"conversation_id": "conv_9"}, key="conv_9#resolved#1")
    drained = drain(crm)

    # Then exactly three attempts were made and the delivery sits in the dead-letter queue
    assert len(receiver.requests) == 3
    assert drained.failed == []
    [letter] = dead_letters(crm)
    assert letter["endpoint_id"] == endpoint.id
    assert letter["url"] == receiver.url
    assert letter["event"]["id"] == event.id
    assert letter["event"]["type"] == "conversation.resolved"
    assert letter["event"]["data"] == {"conversation_id": "conv_9"}
    assert letter["attempts"] == 3
    assert letter["last_error"] == "HTTP 500: database is down"
    assert webhooks.get_endpoint(endpoint.id).consecutive_failures == 3


def test_a_redriven_dead_letter_is_delivered_afresh(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given a delivery dead-lettered after one attempt
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "1")
    receiver = receivers()
    receiver.fail = 1
    webhooks.register(receiver.url, ["offer.expired"])
    event = events.emit("offer.expired", {"offer_id": "off_3"}, key="off_3")
    drain(crm)
    [letter] = dead_letters(crm)

    # When an operator moves it back to the CRM events queue and the endpoint has recovered
    crm.client("sqs").send_message(QueueUrl=crm.resources["CRM_EVENTS_QUEUE_URL"], MessageBody=json.dumps(letter))
    drain(crm)

    # Then it is delivered under the same webhook-id
    assert [r.answer for r in receiver.requests] == ["fail", "ok"]
    assert receiver.requests[1].headers["webhook-id"] == event.id


def test_one_endpoint_down_does_not_hold_up_another(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, webhooks

    # Given one endpoint nobody listens on, two that hang, and a healthy one
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0.8")
    healthy, hanging, hanging_too = receivers(), receivers(), receivers()
    hanging.hang = hanging_too.hang = 10
    down, _ = webhooks.register(closed_port_url(), ["*"])
    webhooks.register(hanging.url, ["*"])
    webhooks.register(healthy.url, ["*"])
    webhooks.register(hanging_too.url, ["*"])

    # When an event fans out
    event = events.emit("customer.created", {"customer_id": "cus_1"}, key="cus_1")
    started = time.monotonic()
    first = process_once(crm)

    # Then the healthy endpoint got it on the first pass, the fan-out message did not fail, and the
    # endpoints were tried side by side (one timeout's worth of waiting, not one per hanging endpoint)
    assert first.failed == []
    assert time.monotonic() - started < 1.5  # one after the other would take at least 1.6 s
    [request] = healthy.requests
    assert request.headers["webhook-id"] == event.id
    stored = webhooks.get_endpoint(down.id)
    assert stored.consecutive_failures == 1
    assert stored.last_error is not None and stored.last_error.startswith("connection error")

    # And the others retry on their own until they are dead-lettered, without re-sending to the healthy one
    drain(crm)
    assert len(healthy.requests) == 1
    assert len(hanging.requests) == len(hanging_too.requests) == 2
    assert sorted(letter["endpoint_id"] for letter in dead_letters(crm)) == sorted(
        e.id for e in webhooks.list_endpoints() if e.url != healthy.url
    )


def test_a_deleted_endpoint_is_dropped_quietly(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.services import events, webhooks

    # Given an endpoint whose first attempt failed, so a retry is queued
    receiver = receivers()
    receiver.fail = 1
    endpoint, _ = webhooks.register(receiver.url, ["offer.rescinded"])
    events.emit("offer.rescinded", {"offer_id": "off_2"}, key="off_2")
    assert process_once(crm).handled == 1
    assert len(receiver.requests) == 1

    # When the endpoint is deleted before the retry runs
    webhooks.delete(endpoint.id)
    drained = drain(crm)

    # Then the retry is consumed without a request, a dead letter or a resurrected endpoint
    assert drained.handled == 1 and drained.failed == []
    assert len(receiver.requests) == 1
    assert dead_letters(crm) == []
    assert webhooks.list_endpoints() == []


def test_an_invocation_near_its_timeout_queues_deliveries_instead_of_making_them(
    crm: Hub, receivers: Callable[[], Receiver]
) -> None:
    from chalicelib.services import events, webhooks

    # Given two endpoints and an invocation with less time left than an attempt may take (2 s + margin)
    first, second = receivers(), receivers()
    webhooks.register(first.url, ["*"])
    webhooks.register(second.url, ["*"])
    event = events.emit("conversation.transferred", {"conversation_id": "conv_7"}, key="trf_1")

    # When the fan-out runs in it
    result = process_once(crm, lambda_seconds=3)

    # Then nothing is sent yet, nothing fails, and the next invocation delivers to both
    assert result.failed == [] and first.requests == [] and second.requests == []
    drained = drain(crm)
    assert drained.handled == 2
    assert [r.headers["webhook-id"] for r in first.requests + second.requests] == [event.id, event.id]
    assert webhooks.list_endpoints()[0].consecutive_failures == 0


def test_a_retry_that_cannot_be_queued_fails_only_its_record(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib import aws
    from chalicelib.services import events, webhooks

    # Given a failing endpoint and SQS refusing to take the retry once
    receiver = receivers()
    receiver.fail = 1
    webhooks.register(receiver.url, ["message.status_updated"])
    events.emit("message.status_updated", {"message_id": "msg_5", "status": "delivered"}, key="msg_5#delivered")
    events.emit("customer.updated", {"customer_id": "cus_5"}, key="cus_5#v2")  # nobody subscribes
    refusals = {"left": 1}

    def refuse_once(**_: Any) -> None:
        if refusals["left"]:
            refusals["left"] -= 1
            raise ConnectionError("injected: SQS unreachable")

    aws.client("sqs").meta.events.register("before-call.sqs.SendMessageBatch", refuse_once)

    # When the worker handles both records in one batch
    result = process_once(crm)

    # Then only the record whose retry was lost is reported failed (SQS redelivers it)
    assert result.handled == 2
    assert len(result.failed) == 1
    assert len(receiver.requests) == 1


def test_emit_many_sends_batches_of_ten(crm: Hub) -> None:
    from chalicelib.domain.events import event_id
    from chalicelib.services import events

    # Given 23 events
    batches = record_sqs_calls("SendMessageBatch")
    wanted = [("message.created", {"message_id": f"msg_{i}"}, f"msg_{i}") for i in range(23)]

    # When they are emitted together
    emitted = events.emit_many(wanted)

    # Then three SendMessageBatch requests of 10, 10 and 3 queued them, with ids from their keys
    assert [len(call["Entries"]) for call in batches] == [10, 10, 3]
    assert [event.id for event in emitted] == [event_id("message.created", f"msg_{i}") for i in range(23)]
    sqs = crm.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=crm.resources["CRM_EVENTS_QUEUE_URL"], MaxNumberOfMessages=10)
        if not batch.get("Messages"):
            break
        bodies.extend(json.loads(m["Body"]) for m in batch["Messages"])
    assert len(bodies) == 23
    assert {body["kind"] for body in bodies} == {"event"}
    assert sorted(body["event"]["data"]["message_id"] for body in bodies) == sorted(f"msg_{i}" for i in range(23))
    assert {body["event"]["id"] for body in bodies} == {event.id for event in emitted}


def test_emit_refuses_unknown_types_before_sending_anything(crm: Hub) -> None:
    from chalicelib.services import events

    sends = record_sqs_calls("SendMessageBatch")
    with pytest.raises(ValueError, match="unknown CRM event type"):
        events.emit_many([("message.created", {}, "a"), ("message.exploded", {}, "b")])
    with pytest.raises(ValueError, match="unknown CRM event type"):
        events.emit("message.exploded", {}, "b")
    assert sends == []


def test_emit_without_a_configured_queue_raises(crm: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import settings
    from chalicelib.services import events

    monkeypatch.setenv("CRM_EVENTS_QUEUE_URL", "")
    settings.cache_clear()
    with pytest.raises(events.EventQueueUnavailable, match="CRM_EVENTS_QUEUE_URL"):
        events.emit("message.created", {}, "msg_1")
