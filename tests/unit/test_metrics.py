"""Business metrics as CloudWatch EMF on stdout: names, units, dimensions and values, one EMF
object per dimension set, flushed at the end of an invocation, and never breaking a request."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import metrics


@pytest.fixture(autouse=True)
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    metrics.discard()


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF objects printed since the last call (log lines are not EMF and are skipped)."""
    lines = capsys.readouterr().out.splitlines()
    return [blob for blob in (json.loads(line) for line in lines if line.startswith("{")) if "_aws" in blob]


def definition(blob: dict[str, Any]) -> dict[str, Any]:
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    return directive


def by_dimensions(blobs: list[dict[str, Any]], **dimensions: str) -> dict[str, Any]:
    [match] = [blob for blob in blobs if all(blob.get(key) == value for key, value in dimensions.items())]
    return match


def test_inbound_messages_are_counted_per_channel_with_a_roll_up(capsys: pytest.CaptureFixture[str]) -> None:
    # Given three new messages on two channels and one provider retry
    metrics.inbound_message("sms")
    metrics.inbound_message("sms")
    metrics.inbound_message("email")
    metrics.inbound_message("sms", duplicate=True)

    # When the invocation ends
    metrics.flush()

    # Then one EMF object per dimension set, in the Omnihub namespace, service omnihub
    blobs = emitted(capsys)
    assert len(blobs) == 2
    sms = by_dimensions(blobs, channel="sms")
    assert definition(sms)["Namespace"] == "Omnihub"
    assert definition(sms)["Metrics"] == [
        {"Name": "InboundMessages", "Unit": "Count"},
        {"Name": "InboundDuplicates", "Unit": "Count"},
    ]
    assert sorted(map(sorted, definition(sms)["Dimensions"])) == [["channel", "service"], ["service"]]
    assert sms["service"] == "omnihub"
    assert sms["InboundMessages"] == [1.0, 1.0] and sms["InboundDuplicates"] == [1.0]
    email = by_dimensions(blobs, channel="email")
    assert email["InboundMessages"] == [1.0] and "InboundDuplicates" not in email


def test_outbound_sends_carry_channel_and_result(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.outbound_send("whatsapp", "sent")
    metrics.outbound_send("whatsapp", "failed")
    metrics.outbound_send("sms", "unavailable")
    metrics.flush()

    blobs = emitted(capsys)
    assert {(b["channel"], b["result"], tuple(b["OutboundMessages"])) for b in blobs} == {
        ("whatsapp", "sent", (1.0,)),
        ("whatsapp", "failed", (1.0,)),
        ("sms", "unavailable", (1.0,)),
    }
    for blob in blobs:
        assert definition(blob)["Metrics"] == [{"Name": "OutboundMessages", "Unit": "Count"}]
        dimension_sets = sorted(map(sorted, definition(blob)["Dimensions"]))
        assert dimension_sets == [["channel", "result", "service"], ["result", "service"]]


def test_routing_and_webhook_metrics_share_the_service_only_dimension_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    queued = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    metrics.assignment_latency(queued, queued + timedelta(seconds=2.5))
    metrics.assignment_latency(0.25)
    metrics.offer_expired()
    metrics.webhook_delivery_failed()
    metrics.webhook_delivery_failed()
    metrics.webhook_delivery_failed(dead_lettered=True)
    metrics.flush()

    [blob] = emitted(capsys)
    assert definition(blob)["Dimensions"] == [["service"]]
    assert {m["Name"]: m["Unit"] for m in definition(blob)["Metrics"]} == {
        "AssignmentLatency": "Seconds",
        "OffersExpired": "Count",
        "WebhookDeliveryFailures": "Count",
        "WebhookDeadLetters": "Count",
    }
    assert blob["AssignmentLatency"] == [2.5, 0.25]
    assert blob["OffersExpired"] == [1.0]
    assert blob["WebhookDeliveryFailures"] == [1.0, 1.0]
    assert blob["WebhookDeadLetters"] == [1.0]


def test_a_flush_with_nothing_buffered_prints_nothing_and_a_second_flush_repeats_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics.flush()
    assert emitted(capsys) == []
    metrics.offer_expired()
    metrics.flush()
    metrics.flush()
    assert len(emitted(capsys)) == 1


def test_namespace_and_service_come_from_powertools_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "OmnihubStaging")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "omnihub-staging")
    metrics.offer_expired()
    metrics.flush()
    [blob] = emitted(capsys)
    assert definition(blob)["Namespace"] == "OmnihubStaging"
    assert blob["service"] == "omnihub-staging"


@pytest.mark.parametrize(("variable", "value"), [("POWERTOOLS_METRICS_DISABLED", "true"), ("POWERTOOLS_DEV", "true")])
def test_disabled_metrics_buffer_and_print_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    for _ in range(150):
        metrics.inbound_message("sms")
    metrics.flush()
    monkeypatch.delenv(variable)
    metrics.flush()
    assert emitted(capsys) == []


def test_a_long_invocation_flushes_by_itself_at_emf_s_limit(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(250):
        metrics.inbound_message("sms")
    metrics.flush()
    blobs = emitted(capsys)
    assert sum(len(blob["InboundMessages"]) for blob in blobs) == 250
    assert all(len(blob["InboundMessages"]) <= 100 for blob in blobs)


def test_metrics_never_raise(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # An unknown result, a naive/aware datetime mix and a broken EMF provider are logged, not raised
    metrics.outbound_send("sms", "exploded")
    metrics.assignment_latency(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1))
    metrics.offer_expired()
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("stdout is gone")

    monkeypatch.setattr(cloudwatch.AmazonCloudWatchEMFProvider, "flush_metrics", broken)
    metrics.flush()
    assert emitted(capsys) == []


def test_counts_sends_classifies_provider_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.domain.messages import Channel
    from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable

    class Plan:
        channel = Channel.WHATSAPP

    @metrics.counts_sends
    def send(plan: Plan, outcome: Exception | None = None) -> str:
        if outcome is not None:
            raise outcome
        return "SM123"

    assert send(Plan()) == "SM123"
    with pytest.raises(ProviderRejected):
        send(Plan(), ProviderRejected("twilio", "21610", "unsubscribed", 400))
    with pytest.raises(ProviderUnavailable):
        send(Plan(), ProviderUnavailable("twilio", "timeout"))
    with pytest.raises(KeyError):  # a bug is not a send outcome: not counted
        send(Plan(), KeyError("x"))
    metrics.flush()

    counted = {(b["channel"], b["result"]): b["OutboundMessages"] for b in emitted(capsys)}
    assert counted == {("whatsapp", "sent"): [1.0], ("whatsapp", "failed"): [1.0], ("whatsapp", "unavailable"): [1.0]}


def test_a_handler_flushes_when_it_returns_or_raises_and_keeps_its_lambda_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chalicelib.observability import logger, with_lambda_context

    seen: list[Any] = []

    @with_lambda_context
    @metrics.flushed
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(logger.thread_safe_get_current_keys().get("function_name"))
        metrics.offer_expired()
        if event.get("fail"):
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    class Context:
        function_name = "omnihub-timers"
        aws_request_id = "req-1"

    assert handler({}, Context()) == {"batchItemFailures": []}
    with pytest.raises(RuntimeError):
        handler({"fail": True}, Context())

    assert seen == ["omnihub-timers", "omnihub-timers"]
    assert [blob["OffersExpired"] for blob in emitted(capsys)] == [[1.0], [1.0]]


@pytest.mark.parametrize("name", ["crm_events", "routing", "timers"])
def test_each_worker_flushes_its_metrics(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import importlib

    module = importlib.import_module(f"handlers.{name}")

    def process(**_: Any) -> dict[str, Any]:
        metrics.offer_expired()
        return {"batchItemFailures": []}

    monkeypatch.setattr(module, "process_partial_response", process)

    class Context:
        function_name = f"omnihub-{name}"
        aws_request_id = "req-1"

    assert module.handler({"Records": []}, Context()) == {"batchItemFailures": []}
    assert [blob["OffersExpired"] for blob in emitted(capsys)] == [[1.0]]


def test_the_http_edge_flushes_after_each_request(capsys: pytest.CaptureFixture[str]) -> None:
    from chalice import Response

    from chalicelib.http.middleware import edge

    class Request:
        method = "POST"
        path = "/webhooks/twilio/messaging"
        headers = {"content-length": "2"}
        raw_body = b"{}"

    def view(_: Any) -> Response:
        metrics.inbound_message("sms")
        return Response(body="", status_code=200)

    assert edge(Request(), view).status_code == 200
    [blob] = emitted(capsys)
    assert blob["InboundMessages"] == [1.0] and blob["channel"] == "sms"
