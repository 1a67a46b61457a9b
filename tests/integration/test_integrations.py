"""Bot integrations against the AWS emulator: registered over the REST API, stored in the table,
and sent events targeted at them alone through the CRM events worker, with the CRM deliveries'
signing, retries and dead-letter queue (loopback receivers from test_crm_webhooks)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import Hub
from tests.integration.test_crm_webhooks import (
    Receiver,
    assert_signed,
    crm,
    dead_letters,
    drain,
    process_once,
    receivers,
    record_sqs_calls,
)

__all__ = ["crm", "receivers"]  # fixtures

API = {"Authorization": "Bearer test-api-key", "Content-Type": "application/json"}


@pytest.fixture
def client(crm: Hub) -> Iterator[Client]:
    import app

    with Client(app.app) as test_client:
        yield test_client


def post(client: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = client.http.post("/v1/integrations", headers=API, body=json.dumps(body))
    return response.status_code, json.loads(response.body or b"null"), dict(response.headers)


def get(client: Client, path: str) -> tuple[int, Any]:
    response = client.http.get(path, headers=API)
    return response.status_code, json.loads(response.body or b"null")


# --- The API ------------------------------------------------------------------------------------


def test_integrations_are_registered_listed_read_and_deleted(crm: Hub, client: Client) -> None:
    # Given two integrations, one with the default events and a generated secret, one with its own
    chosen = "whsec_" + base64.b64encode(b"b" * 40).decode()
    status, first, headers = post(client, {"name": "Order bot", "url": "https://bots.example.com/hook"})
    assert status == 201
    status, second, _ = post(
        client,
        {
            "name": "  Returns bot ",
            "url": "http://127.0.0.1:9/bot",
            "events": ["message.created", "conversation.control_changed", "message.created"],
            "secret": chosen,
        },
    )
    assert status == 201

    # Then each answer shows the integration and its signing secret, once
    assert first["id"].startswith("int_") and len(first["id"]) == 30
    assert headers["Location"] == f"/v1/integrations/{first['id']}"
    assert (first["name"], first["url"], first["events"]) == (
        "Order bot",
        "https://bots.example.com/hook",
        ["message.created"],
    )
    assert first["secret"].startswith("whsec_") and len(base64.b64decode(first["secret"][6:])) == 32
    assert first["created_at"].endswith("Z")
    assert first["delivery"] == {
        "last_success_at": None,
        "last_failure_at": None,
        "last_error": None,
        "consecutive_failures": 0,
    }
    assert (second["name"], second["secret"]) == ("Returns bot", chosen)
    assert second["events"] == ["message.created", "conversation.control_changed"]

    # And listing and reading never show a secret again
    status, listed = get(client, "/v1/integrations")
    assert status == 200
    assert [item["id"] for item in listed["data"]] == [first["id"], second["id"]]
    status, read = get(client, f"/v1/integrations/{second['id']}")
    assert status == 200 and read["url"] == "http://127.0.0.1:9/bot"
    shown = json.dumps([listed, read])
    assert "secret" not in shown and first["secret"] not in shown and chosen not in shown

    # And the service's lookup finds it with its secret, for the worker that signs
    from chalicelib.services import integrations

    assert integrations.get_integration(second["id"]).secret == chosen
    assert integrations.find_integration(first["id"]) is not None
    assert chosen not in repr(integrations.get_integration(second["id"]))

    # When one is deleted
    assert client.http.delete(f"/v1/integrations/{first['id']}", headers=API).status_code == 204

    # Then it is gone; reading or deleting it again, or an id the hub never makes, is 404
    assert [item["id"] for item in get(client, "/v1/integrations")[1]["data"]] == [second["id"]]
    assert integrations.find_integration(first["id"]) is None
    for path in (f"/v1/integrations/{first['id']}", "/v1/integrations/int_nope", "/v1/integrations/wh_x"):
        status, answer = get(client, path)
        assert status == 404 and answer["error"]["code"] == "not_found"
    assert client.http.delete(f"/v1/integrations/{first['id']}", headers=API).status_code == 404
    assert integrations.find_integration("x" * 5000) is None
    # And the rest needs the API key
    assert client.http.get("/v1/integrations").status_code == 401


def test_invalid_integrations_are_refused_and_nothing_is_stored(
    crm: Hub, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALLOW_INSECURE_WEBHOOK_URLS", raising=False)
    good = {"name": "Bot", "url": "https://bots.example.com/hook"}
    short_secret = "whsec_" + base64.b64encode(b"s" * 16).decode()
    for change, fragment in [
        ({"url": "http://bots.example.com/hook"}, "https"),
        ({"url": "mailto:bot@example.com"}, "http or https"),
        ({"url": "https://user:pw@bots.example.com/"}, "credentials"),
        ({"events": ["message.sent"]}, "unknown event type 'message.sent'"),
        ({"events": []}, "events"),
        ({"events": ["*", "message.created"]}, "alone"),
        ({"secret": "hunter2"}, "whsec_"),
        ({"secret": short_secret}, "24 to 64"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"active": True}, "active"),
    ]:
        body = {key: value for key, value in {**good, **change}.items() if value is not None}
        status, answer, _ = post(client, body)
        assert status == 400, (change, answer)
        assert answer["error"]["code"] in {"bad_request", "invalid_request"}
        assert fragment in answer["error"]["message"], (change, answer)
    assert get(client, "/v1/integrations") == (200, {"data": []})
    assert crm.item_count() == 0


# --- Targeted delivery --------------------------------------------------------------------------


def test_a_targeted_event_reaches_only_its_integration_signed(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.domain.events import event_id, payload
    from chalicelib.services import events, integrations, webhooks

    # Given a bot integration, another integration, and a CRM endpoint that wants every event
    bot, other_bot, crm_endpoint = receivers(), receivers(), receivers()
    integration, secret = integrations.register("Order bot", bot.url)
    integrations.register("Other bot", other_bot.url, ["*"])
    webhooks.register(crm_endpoint.url, ["*"])
    sends = record_sqs_calls("SendMessage")

    # When a message.created event is queued for the bot and the worker runs
    data = {"conversation_id": "conv_1", "message": {"id": "msg_1", "body": "Where is my order?"}}
    event = events.emit_to_integration(integration.id, "message.created", data, key="msg_1")
    drained = drain(crm)

    # Then the queue carried one message addressed to that integration
    [sent] = sends
    assert json.loads(sent["MessageBody"]) == {
        "kind": "integration",
        "integration_id": integration.id,
        "event": event.model_dump(mode="json"),
    }
    # And the bot got it once, signed with its own secret, under the id made from (type, key)
    assert drained.handled == 1 and drained.failed == []
    [request] = bot.requests
    assert request.body == payload(event)
    assert json.loads(request.body)["data"] == data
    assert request.headers["webhook-id"] == event.id == event_id("message.created", "msg_1")
    assert request.headers["user-agent"] == "omnihub-webhooks/1"
    assert_signed(request, secret)
    # And neither the CRM endpoint nor the other integration got anything
    assert crm_endpoint.requests == [] and other_bot.requests == []
    # And the integration's stats show the success
    stored = integrations.get_integration(integration.id)
    assert stored.last_success_at is not None and stored.consecutive_failures == 0


def test_an_integration_gets_only_the_event_types_it_asked_for(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.services import events, integrations

    # Given one integration with the default events and one that also wants control changes
    default, wants_control = receivers(), receivers()
    messages_only, _ = integrations.register("Messages bot", default.url)
    both, _ = integrations.register(
        "Control bot", wants_control.url, ["message.created", "conversation.control_changed"]
    )

    # When a control change is queued for each
    change = {"conversation_id": "conv_2", "previous": {"type": "humans"}, "new": {"type": "integration"}}
    for target in (messages_only, both):
        events.emit_to_integration(target.id, "conversation.control_changed", change, key=f"conv_2#ctl#{target.id}")
    drained = drain(crm)

    # Then only the one that asked for it received it; the other's was dropped without failing
    assert drained.handled == 2 and drained.failed == []
    assert default.requests == []
    [request] = wants_control.requests
    assert json.loads(request.body)["type"] == "conversation.control_changed"


def test_a_failing_integration_is_retried_then_dead_lettered(
    crm: Hub, receivers: Callable[[], Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import events, integrations, webhooks

    # Given an integration that always answers 500, three attempts, and a CRM endpoint for everything
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    bot, crm_endpoint = receivers(), receivers()
    bot.fail = 100
    integration, secret = integrations.register("Flaky bot", bot.url)
    webhooks.register(crm_endpoint.url, ["*"])
    retries = record_sqs_calls("SendMessageBatch")

    # When an event is queued for it and the worker runs
    event = events.emit_to_integration(integration.id, "message.created", {"message_id": "msg_3"}, key="msg_3")
    drained = drain(crm)

    # Then three attempts were made under one webhook-id, each signed, none failing its record
    assert [r.answer for r in bot.requests] == ["fail", "fail", "fail"]
    assert {r.headers["webhook-id"] for r in bot.requests} == {event.id}
    for request in bot.requests:
        assert_signed(request, secret)
    assert drained.handled == 3 and drained.failed == []
    # And the retries were integration messages of their own
    entries = [json.loads(entry["MessageBody"]) for call in retries for entry in call["Entries"]]
    assert [(e["kind"], e["integration_id"], e["attempt"]) for e in entries] == [
        ("integration", integration.id, 2),
        ("integration", integration.id, 3),
    ]
    # And the delivery sits in the dead-letter queue, addressed to the integration
    [letter] = dead_letters(crm)
    assert letter["kind"] == "integration"
    assert letter["integration_id"] == integration.id
    assert letter["url"] == bot.url
    assert letter["event"]["id"] == event.id
    assert letter["attempts"] == 3
    assert letter["last_error"] == "HTTP 500: database is down"
    assert "endpoint_id" not in letter and "attempt" not in letter
    # And the CRM endpoint never saw it; the integration's stats count the failures
    assert crm_endpoint.requests == []
    stored = integrations.get_integration(integration.id)
    assert stored.consecutive_failures == 3 and stored.last_error == "HTTP 500: database is down"

    # When the bot has recovered and an operator redrives the dead letter
    bot.fail = 0
    crm.client("sqs").send_message(QueueUrl=crm.resources["CRM_EVENTS_QUEUE_URL"], MessageBody=json.dumps(letter))
    drain(crm)

    # Then it is delivered afresh under the same webhook-id
    assert [r.answer for r in bot.requests][-1] == "ok"
    assert bot.requests[-1].headers["webhook-id"] == event.id
    assert crm_endpoint.requests == []
    assert integrations.get_integration(integration.id).consecutive_failures == 0


class ThrottlingBot:
    """Answers 429 with `Retry-After: 1` to its first request, then 200."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        bot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                status = 429 if not bot.statuses else 200
                bot.statuses.append(status)
                self.send_response(status)
                if status == 429:
                    self.send_header("retry-after", "1")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_integrations_retry_after_is_honoured(crm: Hub) -> None:
    from chalicelib.services import events, integrations

    # Given a bot that asks to be retried after 1 s (and retries that would otherwise come at once)
    bot = ThrottlingBot()
    try:
        integration, _ = integrations.register("Busy bot", bot.url)
        retries = record_sqs_calls("SendMessageBatch")

        # When an event is queued for it and the worker runs
        events.emit_to_integration(integration.id, "message.created", {"message_id": "msg_4"}, key="msg_4")
        drain(crm)

        # Then the retry waited the second it asked for, and then got through
        [entry] = [entry for call in retries for entry in call["Entries"]]
        assert entry["DelaySeconds"] == 1
        assert bot.statuses == [429, 200]
    finally:
        bot.stop()


def test_a_deleted_integrations_deliveries_are_dropped(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.services import events, integrations

    # Given an integration whose first attempt failed, so a retry is queued
    bot, gone_before = receivers(), receivers()
    bot.fail = 1
    integration, _ = integrations.register("Retired bot", bot.url)
    events.emit_to_integration(integration.id, "message.created", {"message_id": "msg_5"}, key="msg_5")
    assert process_once(crm).handled == 1
    assert len(bot.requests) == 1
    # And another integration with an event queued that has not been attempted yet
    never, _ = integrations.register("Never bot", gone_before.url)
    events.emit_to_integration(never.id, "message.created", {"message_id": "msg_6"}, key="msg_6")

    # When both integrations are deleted before the worker runs again
    integrations.delete(integration.id)
    integrations.delete(never.id)
    drained = drain(crm)

    # Then the retry and the first attempt are consumed without a request, a dead letter or a
    # resurrected integration
    assert drained.handled == 2 and drained.failed == []
    assert len(bot.requests) == 1 and gone_before.requests == []
    assert dead_letters(crm) == []
    assert integrations.list_integrations() == []
    assert crm.item_count() == 0


def test_an_invocation_near_its_timeout_queues_the_attempt_instead(crm: Hub, receivers: Callable[[], Receiver]) -> None:
    from chalicelib.services import events, integrations

    # Given an event for an integration and an invocation with less time left than an attempt may take
    bot = receivers()
    integration, _ = integrations.register("Bot", bot.url)
    event = events.emit_to_integration(integration.id, "message.created", {"message_id": "msg_7"}, key="msg_7")

    # When the worker runs in it, then in a normal one
    assert process_once(crm, lambda_seconds=3).failed == []
    assert bot.requests == []
    drained = drain(crm)

    # Then the next invocation delivered it
    assert drained.handled == 1
    assert [r.headers["webhook-id"] for r in bot.requests] == [event.id]


def test_emit_to_integration_refuses_bad_ids_and_types_before_sending(crm: Hub) -> None:
    from chalicelib.services import events

    sends = record_sqs_calls("SendMessage")
    for bad in ("wh_01J00000000000000000000000", "int_nope", "", "humans"):
        with pytest.raises(ValueError, match="not an integration id"):
            events.emit_to_integration(bad, "message.created", {}, "msg_1")
    with pytest.raises(ValueError, match="unknown CRM event type"):
        events.emit_to_integration("int_01J00000000000000000000000", "message.exploded", {}, "msg_1")
    with pytest.raises(ValueError, match="key"):
        events.emit_to_integration("int_01J00000000000000000000000", "message.created", {}, "")
    assert sends == []
