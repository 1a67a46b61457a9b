"""Metrics end to end against the AWS emulator: a signed webhook through the HTTP edge prints the
inbound metric when the request ends, and the routing worker prints the assignment latency when
its invocation ends."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from chalicelib import metrics
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.support.twilio_signature import sign_form

MESSAGING = "/webhooks/twilio/messaging"


def emf(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = capsys.readouterr().out.splitlines()
    return [blob for blob in (json.loads(line) for line in lines if line.startswith("{")) if "_aws" in blob]


def post_sms(client: Client, sid: str) -> int:
    params = {
        "MessageSid": sid,
        "AccountSid": "AC00000000000000000000000000000000",
        "From": "+15017122661",
        "To": "+14155238886",
        "Body": "Where is my order?",
        "NumMedia": "0",
    }
    signature = sign_form("https://hub.example.com" + MESSAGING, params, "test-twilio-token")
    response = client.http.post(
        MESSAGING,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        body=urlencode(params),
    )
    return response.status_code


def test_an_ingested_message_emits_the_inbound_metric_and_its_offer_the_latency(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    configure(monkeypatch)
    make_agent("grace")
    metrics.flush()
    capsys.readouterr()

    # Given a signed Twilio webhook, When it is ingested (and then retried by the provider)
    with Client(app.app) as client:
        assert post_sms(client, "SMmetrics1") == 200
        inbound = emf(capsys)
        assert post_sms(client, "SMmetrics1") == 200
        retried = emf(capsys)

    # Then the request's end printed the inbound metric for the SMS channel, once
    [blob] = [b for b in inbound if "InboundMessages" in b]
    assert blob["InboundMessages"] == [1.0] and blob["channel"] == "sms" and blob["service"] == "omnihub"
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Omnihub"
    assert not any("InboundMessages" in b for b in retried)
    assert [b["InboundDuplicates"] for b in retried if "InboundDuplicates" in b] == [[1.0]]

    # And the routing worker's invocation that offered it to the agent printed the latency
    from chalicelib.store import agents as agent_store

    Workers(hub).drain(until=lambda: bool(agent_store.get_agent("grace").offer_ids))
    latencies = [value for b in emf(capsys) for value in b.get("AssignmentLatency", [])]
    assert len(latencies) == 1 and 0 <= latencies[0] < 30
