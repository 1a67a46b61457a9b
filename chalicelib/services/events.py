"""Emit CRM events: queue them on the CRM events queue for the delivery worker,
and count them for analytics in the same flow (services/analytics.py: at most 2 more requests per
conversation the events are about, none for events analytics does not read).

Emitting costs one SQS request (SendMessage, or SendMessageBatch per 10 events) and never waits
for a CRM: delivery, retries and dead-lettering happen in handlers/crm_events.py. Callers run in
SQS workers and rely on their own retry, so a failure to queue raises; the event id is derived
from (type, key), so the retried step queues the same event again and the CRM sees it once.

`emit_to_integration` queues an event for one bot integration only (the bot in control of a
conversation): the same worker delivers it to that integration's URL alone, never to the CRM's
endpoints, with the same signing, retries and dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib import aws
from chalicelib.config import settings
from chalicelib.domain.analytics import CycleState
from chalicelib.domain.events import CrmEvent, new_event
from chalicelib.domain.integrations import is_integration_id
from chalicelib.observability import logger
from chalicelib.services import analytics
from chalicelib.services.errors import EventQueueUnavailable

BATCH_ENTRIES = 10  # SendMessageBatch's limit
BATCH_BYTES = 256 * 1024  # SendMessageBatch's total payload limit


def queue_url() -> str:
    url = settings().crm_events_queue_url
    if not url:
        raise EventQueueUnavailable("CRM_EVENTS_QUEUE_URL is not set: CRM events have nowhere to go")
    return url


def message_body(event: CrmEvent) -> str:
    return json.dumps({"kind": "event", "event": event.model_dump(mode="json")}, separators=(",", ":"))


def emit(event_type: str, data: dict[str, Any], key: str, timestamp: datetime | None = None) -> CrmEvent:
    """Queue one event. `key` names the state change (e.g. the message id) and fixes the event id."""
    event = new_event(event_type, data, key, timestamp)
    aws.client("sqs").send_message(QueueUrl=queue_url(), MessageBody=message_body(event))
    logger.debug("crm event queued", extra={"event_id": event.id, "event_type": event.type})
    analytics.count([event])
    return event


def integration_message_body(integration_id: str, event: CrmEvent) -> str:
    body = {"kind": "integration", "integration_id": integration_id, "event": event.model_dump(mode="json")}
    return json.dumps(body, separators=(",", ":"))


def emit_to_integration(
    integration_id: str, event_type: str, data: dict[str, Any], key: str, timestamp: datetime | None = None
) -> CrmEvent:
    """Queue one event for one integration (one SQS request). It is delivered only if the
    integration still exists when the worker runs and subscribes to `event_type`; otherwise it is
    dropped (logged). The id comes from (type, key), as for `emit`, so a retried step queues the
    same event (same `webhook-id`). Raises ValueError for an id that is not an integration's."""
    if not is_integration_id(integration_id):
        raise ValueError(f"not an integration id: {str(integration_id)[:64]!r}")
    event = new_event(event_type, data, key, timestamp)
    aws.client("sqs").send_message(QueueUrl=queue_url(), MessageBody=integration_message_body(integration_id, event))
    logger.debug(
        "integration event queued",
        extra={"integration_id": integration_id, "event_id": event.id, "event_type": event.type},
    )
    return event


def emit_many(
    events: list[tuple[str, dict[str, Any], str]], heads: Mapping[str, CycleState | None] | None = None
) -> list[CrmEvent]:
    """Queue several events with SendMessageBatch (10 per request, within its size limit).

    All events are validated before anything is sent. Raises EventQueueUnavailable if any entry
    is not queued; re-emitting them all is safe (same ids). `heads`: analytics cycle heads the
    caller read already (services/analytics.count)."""
    made = [new_event(event_type, data, key) for event_type, data, key in events]
    if not made:
        return []
    url = queue_url()
    sqs = aws.client("sqs")
    for chunk in _chunks([message_body(event) for event in made]):
        response = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(chunk)]
        )
        failed = response.get("Failed") or []
        if failed:
            reasons = sorted({f"{entry.get('Code')}: {entry.get('Message', '')}".strip() for entry in failed})
            raise EventQueueUnavailable(f"{len(failed)} of {len(chunk)} CRM events not queued ({'; '.join(reasons)})")
    logger.debug("crm events queued", extra={"count": len(made)})
    analytics.count(made, heads)
    return made


def _chunks(bodies: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8"))
        if current and (len(current) == BATCH_ENTRIES or size + length > BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        chunks.append(current)
    return chunks
