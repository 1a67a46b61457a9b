"""The event history without AWS: the NDJSON line every event becomes, and how the local stack's
Firehose names objects (local/firehose.py) so they land in the same date partitions as in AWS."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.domain.events import CrmEvent, new_event, payload
from chalicelib.services.event_log import line
from infra.definitions import EVENT_LOG
from local.firehose import UnsupportedPrefix, object_key


def event(data: dict[str, Any]) -> CrmEvent:
    return new_event(
        "message.created",
        data,
        "msg_1",
        timestamp=datetime(2026, 12, 2, 13, 30, 0, 123456, tzinfo=timezone(timedelta(hours=3))),
    )


# --- The line -----------------------------------------------------------------------------------


def test_a_line_is_the_webhook_body_with_the_id_first_and_a_newline() -> None:
    # Given an event with nested, unsorted, non-ASCII data
    made = event({"message": {"channel": "sms", "body": "Merhaba, siparişim?", "direction": "inbound"}, "queue": "x"})

    # When it becomes a line of the history
    written = line(made)

    # Then it is one line of ASCII JSON ending in a newline: id, type, timestamp (UTC, Z), data
    assert written.endswith(b"\n") and written.count(b"\n") == 1
    written.decode("ascii")
    record = json.loads(written)
    assert list(record) == ["id", "type", "timestamp", "data"]
    assert record["id"] == made.id and re.fullmatch(r"evt_[A-Z2-7]{26}", record["id"])
    assert record["type"] == "message.created"
    assert record["timestamp"] == "2026-12-02T10:30:00.123456Z"
    assert record["data"]["message"]["body"] == "Merhaba, siparişim?"
    # and apart from the id it is exactly what a CRM's webhook receives
    assert {key: value for key, value in record.items() if key != "id"} == json.loads(payload(made))
    assert written == b'{"id":"' + made.id.encode() + b'",' + payload(made)[1:] + b"\n"


def test_the_same_event_always_gives_the_same_bytes() -> None:
    first = event({"b": 1, "a": {"d": [3, {"z": 1, "y": 2}], "c": None}})
    again = event({"a": {"c": None, "d": [3, {"y": 2, "z": 1}]}, "b": 1})

    assert line(first) == line(again)
    assert b'"data":{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}' in line(first)


def test_a_body_with_newlines_stays_on_one_line() -> None:
    written = line(event({"message": {"body": "line one\nline two\r\n"}}))

    assert written.count(b"\n") == 1
    assert json.loads(written)["data"]["message"]["body"] == "line one\nline two\r\n"


# --- Where the local Firehose puts objects ----------------------------------------------------------

NOW = datetime(2026, 12, 2, 23, 59, 58, tzinfo=UTC)


def test_the_local_firehose_evaluates_the_date_partition_of_the_prefix() -> None:
    key = object_key("omnihub-events", "1", EVENT_LOG.prefix, NOW)

    assert re.fullmatch(r"events/dt=2026-12-02/omnihub-events-1-2026-12-02-23-59-58-[0-9a-f-]{36}", key), key


def test_the_date_is_the_utc_day_whatever_the_offset_given() -> None:
    in_istanbul = datetime(2026, 12, 3, 1, 0, tzinfo=timezone(timedelta(hours=3)))

    assert object_key("s", "1", EVENT_LOG.prefix, in_istanbul).startswith(
        "events/dt=2026-12-02/s-1-2026-12-02-22-00-00-"
    )


def test_a_prefix_without_a_timestamp_gets_firehoses_default_hourly_folders() -> None:
    assert object_key("s", "1", "events/", NOW).startswith("events/2026/12/02/23/s-1-")
    assert object_key("s", "1", "events", NOW).startswith("events/2026/12/02/23/s-1-")
    assert object_key("s", "1", "", NOW).startswith("2026/12/02/23/s-1-")


def test_other_expressions_are_evaluated_or_refused() -> None:
    key = object_key("s", "1", "x/!{timestamp:yyyy/MM/dd/HH}/!{firehose:random-string}/", NOW)
    assert re.fullmatch(r"x/2026/12/02/23/[0-9a-f]{11}/s-1-.+", key), key
    with pytest.raises(UnsupportedPrefix):
        object_key("s", "1", "x/!{timestamp:yyyy-ww}/", NOW)
    with pytest.raises(UnsupportedPrefix):
        object_key("s", "1", "x/!{partitionKeyFromQuery:channel}/", NOW)


def test_the_error_prefix_is_one_the_local_firehose_could_evaluate_too() -> None:
    # moto never fails a delivery, so the error prefix is never used locally; it still parses
    # once the error type is known, as Firehose fills it in
    prefix = EVENT_LOG.error_prefix.replace("!{firehose:error-output-type}", "processing-failed")
    assert object_key("s", "1", prefix, NOW).startswith("errors/processing-failed/dt=2026-12-02/")


def test_installing_adapts_moto_and_can_be_repeated() -> None:
    from moto.firehose.models import DeliveryStream, FirehoseBackend

    from local import firehose

    firehose.install()
    firehose.install()

    assert DeliveryStream.MAX_STREAMS_PER_REGION >= firehose.MAX_STREAMS, "one stream per test hub"
    key = FirehoseBackend._format_s3_object_path("s", "1", EVENT_LOG.prefix)
    assert re.fullmatch(r"events/dt=\d{4}-\d{2}-\d{2}/s-1-.+", key), key
