"""The event history, for the business's own BI: every hub event as one line of newline-delimited
JSON in S3, through Kinesis Data Firehose, partitioned by date, with a Glue table over it that
Athena queries (README, "Event history (Athena)"; the stream, bucket and table are in infra/).

A line is the webhook body a CRM receives (`domain.events.payload`: `type`, `timestamp`, `data`
with its keys sorted) with the event's `id` first, and a newline:

    {"id":"evt_...","type":"message.created","timestamp":"2026-12-02T10:00:00Z","data":{...}}

The CRM events worker writes it (services/crm_delivery.py) for each event message it takes from
its queue, before any CRM delivery: once per event, never for a delivery retry or an
integration's copy of an event. Cost: one Firehose PutRecord per event, off the request path. A
PutRecord that fails (after botocore's own retries) raises, so the record fails and SQS delivers
the message again.

At least once: a line can be written twice, when SQS redelivers a message whose export succeeded
but whose CRM fan-out then failed, or when Firehose itself retries. Both copies carry the same
`id` (derived from what happened, see domain/events.py); readers deduplicate on it (the README's
queries count DISTINCT id).

EVENT_LOG_STREAM names the Firehose delivery stream; blank turns the history off.
"""

from __future__ import annotations

import json

from chalicelib import aws
from chalicelib.config import settings
from chalicelib.domain.events import CrmEvent, payload
from chalicelib.observability import logger

_reported_off = False


class EventLogUnavailable(RuntimeError):
    """Firehose did not take the event; the worker's record fails and SQS delivers it again."""


def line(event: CrmEvent) -> bytes:
    """The event as one NDJSON line: `id`, then the webhook body's `type`, `timestamp`, `data`."""
    record = {"id": event.id, **json.loads(payload(event))}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


def stream_name() -> str:
    return settings().event_log_stream.strip()


def export(event: CrmEvent) -> None:
    """Write one event to the history (nothing when EVENT_LOG_STREAM is blank). Raises
    EventLogUnavailable when Firehose does not take it."""
    global _reported_off
    stream = stream_name()
    if not stream:
        if not _reported_off:
            _reported_off = True
            logger.debug("event history is off (EVENT_LOG_STREAM is blank)")
        return
    try:
        # A line is at most about the size of the SQS message the event came in (256 KiB), well
        # within Firehose's 1,000 KiB per record.
        aws.client("firehose").put_record(DeliveryStreamName=stream, Record={"Data": line(event)})
    except Exception as exc:
        logger.warning(
            "event history: Firehose did not take the event",
            extra={"event_id": event.id, "event_type": event.type, "error": type(exc).__name__},
        )
        raise EventLogUnavailable(f"Firehose stream {stream!r} did not take event {event.id}: {exc}") from exc
    logger.debug("event written to the history", extra={"event_id": event.id, "event_type": event.type})
