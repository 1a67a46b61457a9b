"""Deliver CRM events to webhook endpoints, and events targeted at one bot integration to that
integration, signed as Standard Webhooks specifies.

The CRM events queue carries three kinds of message:

- `{"kind": "event", "event": {...}}`: a new event. It is delivered to every endpoint subscribed
  to its type, concurrently, so one slow endpoint does not hold up another.
- `{"kind": "delivery", "endpoint_id", "event", "attempt"}`: one endpoint's next attempt.
- `{"kind": "integration", "integration_id", "event", "attempt"?}`: an event for one bot
  integration only (services/events.py emit_to_integration; no attempt means the first), never
  fanned out to CRM endpoints. It is delivered if the integration still exists and subscribes to
  its type (else dropped, logged), with the same signing, timeout, retries, Retry-After and
  dead-letter queue as a CRM delivery; its retries and dead letter are messages of this kind.

A failed attempt (non-2xx, timeout, connection error) never fails the message it came from: the
next attempt is queued as its own "delivery" message with an exponential, jittered delay, and
after the last attempt the delivery goes to the CRM dead-letter queue. Only a failure to queue
that retry or dead letter raises, so SQS redelivers the message (every attempt of one event
carries the same `webhook-id`, the CRM's idempotency key). A dead letter is itself a "delivery"
message without an attempt number, so redriving the dead-letter queue back to the CRM events
queue starts that endpoint's retries afresh.

Settings (`chalicelib.config`): WEBHOOK_TIMEOUT_SECONDS (5; 0.1 to 25), WEBHOOK_MAX_ATTEMPTS
(8; at least 1), WEBHOOK_RETRY_BASE_SECONDS (5; at least 0; the n-th retry waits about
base * 2**(n-1) s, at most 900 s). A value out of those bounds, or not a number, is ignored and
the default applies.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from chalicelib import aws, metrics
from chalicelib.config import settings
from chalicelib.domain.events import CrmEvent, WebhookEndpoint, payload
from chalicelib.domain.integrations import Integration
from chalicelib.observability import logger
from chalicelib.services import event_log
from chalicelib.store import integrations as integration_store
from chalicelib.store import webhooks as store

USER_AGENT = "omnihub-webhooks/1"
MAX_DELAY_SECONDS = 900  # SQS's longest DelaySeconds
MAX_PARALLEL_DELIVERIES = 8
ERROR_SNIPPET = 200
# What an attempt needs beyond the HTTP timeout to record its outcome and queue a retry.
OUTCOME_MARGIN_SECONDS = 2.0


# Where one delivery goes: a CRM's webhook endpoint, or one bot integration.
Destination = WebhookEndpoint | Integration


class DeliveryQueueUnavailable(RuntimeError):
    """A retry or dead letter could not be queued; SQS redelivers the message that needed it."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: int | None = None


# --- Settings (read on every use, so a changed environment applies at once) -------------------


def timeout_seconds() -> float:
    return settings().webhook_timeout_seconds


def max_attempts() -> int:
    return settings().webhook_max_attempts


def retry_base_seconds() -> float:
    return settings().webhook_retry_base_seconds


def retry_delay(failed_attempt: int, retry_after: int | None = None) -> int:
    """Seconds before the attempt after `failed_attempt` (1-based): base * 2**(n-1), capped at
    900, with jitter (50 to 100 % of it); a Retry-After the endpoint sent is honoured up to 900."""
    ceiling = min(MAX_DELAY_SECONDS, retry_base_seconds() * 2 ** min(failed_attempt - 1, 30))
    delay = round(ceiling * random.uniform(0.5, 1.0))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0, min(MAX_DELAY_SECONDS, delay))


# --- The queue messages ---------------------------------------------------------------------


def handle_record(body: dict[str, Any], deadline: float | None = None) -> None:
    """Handle one CRM-queue message. `deadline` (time.monotonic()) is when the invocation must be
    done; attempts that would not finish by then are queued instead of made."""
    kind = body.get("kind")
    if kind == "event":
        event = CrmEvent.model_validate(body["event"])
        event_log.export(event)  # the history first: a failure here redelivers before any CRM sees it
        _fan_out(event, deadline)
    elif kind == "delivery":
        event = CrmEvent.model_validate(body["event"])
        _redeliver(str(body["endpoint_id"]), event, int(body.get("attempt") or 1), deadline)
    elif kind == "integration":
        event = CrmEvent.model_validate(body["event"])
        _deliver_to_integration(str(body["integration_id"]), event, int(body.get("attempt") or 1), deadline)
    else:
        raise ValueError(f"unknown CRM queue message kind {kind!r}")


def _fan_out(event: CrmEvent, deadline: float | None) -> None:
    endpoints = [endpoint for endpoint in store.list_endpoints() if endpoint.subscribes(event.type)]
    if not endpoints:
        logger.debug("no endpoint subscribes to this event", extra={"event_id": event.id, "event_type": event.type})
        return
    if not _time_for_an_attempt(deadline):
        _queue_deliveries([(endpoint, 1, 0) for endpoint in endpoints], event)
        return
    if len(endpoints) == 1:
        _attempt(endpoints[0], event, 1)
        return
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DELIVERIES, len(endpoints))) as pool:
        futures = [pool.submit(_attempt, endpoint, event, 1) for endpoint in endpoints]
        for future in futures:
            error = future.exception()
            if error is not None:
                errors.append(error)
    if errors:
        # Every endpoint was tried; the redelivered message repeats the same webhook-id.
        raise errors[0]


def _redeliver(endpoint_id: str, event: CrmEvent, attempt: int, deadline: float | None) -> None:
    endpoint = store.get_endpoint(endpoint_id)
    if endpoint is None:
        logger.info(
            "endpoint deleted; delivery dropped",
            extra={"endpoint_id": endpoint_id, "event_id": event.id, "attempt": attempt},
        )
        return
    if not _time_for_an_attempt(deadline):
        _queue_deliveries([(endpoint, attempt, 0)], event)
        return
    _attempt(endpoint, event, attempt)


def _deliver_to_integration(integration_id: str, event: CrmEvent, attempt: int, deadline: float | None) -> None:
    log = {"integration_id": integration_id, "event_id": event.id, "event_type": event.type, "attempt": attempt}
    integration = integration_store.get_integration(integration_id)
    if integration is None:
        logger.info("integration deleted; delivery dropped", extra=log)
        return
    if not integration.subscribes(event.type):
        logger.info("integration does not subscribe to this event; delivery dropped", extra=log)
        return
    if not _time_for_an_attempt(deadline):
        _queue_deliveries([(integration, attempt, 0)], event)
        return
    _attempt(integration, event, attempt)


def _describes(destination: Destination) -> tuple[str, str]:
    """The log field naming the destination, and what its deliveries are called in logs."""
    if isinstance(destination, Integration):
        return "integration_id", "integration event"
    return "endpoint_id", "crm event"


def _stats_store(destination: Destination) -> Any:
    return integration_store if isinstance(destination, Integration) else store


def _time_for_an_attempt(deadline: float | None) -> bool:
    return deadline is None or deadline - time.monotonic() >= timeout_seconds() + OUTCOME_MARGIN_SECONDS


def _attempt(endpoint: Destination, event: CrmEvent, attempt: int) -> None:
    outcome = deliver(endpoint, event)
    now = datetime.now(UTC)
    id_field, what = _describes(endpoint)
    stats = _stats_store(endpoint)
    log = {
        id_field: endpoint.id,
        "host": urlsplit(endpoint.url).hostname,
        "event_id": event.id,
        "event_type": event.type,
        "attempt": attempt,
        "status": outcome.status,
    }
    if outcome.ok:
        _note(stats.record_success, endpoint.id, now)
        logger.info(f"{what} delivered", extra=log)
        return
    error = outcome.error or "failed"
    metrics.webhook_delivery_failed()
    if _note(stats.record_failure, endpoint.id, now, error) is False:
        logger.info(f"{id_field.removesuffix('_id')} deleted; delivery dropped", extra={**log, "error": error})
        return
    if attempt < max_attempts():
        delay = retry_delay(attempt, outcome.retry_after)
        _queue_deliveries([(endpoint, attempt + 1, delay)], event)
        logger.warning(f"{what} delivery failed; retry queued", extra={**log, "error": error, "retry_in": delay})
        return
    _dead_letter(endpoint, event, attempt, error)
    metrics.webhook_delivery_failed(dead_lettered=True)
    logger.error(f"{what} delivery failed for good; dead-lettered", extra={**log, "error": error})


def _note(record: Callable[..., bool], *args: Any) -> bool | None:
    """Record delivery stats: False if the endpoint is gone, None if the write failed (stats are
    for people reading them; failing to write them never fails a delivery)."""
    try:
        return record(*args)
    except Exception as exc:
        logger.warning("could not record delivery stats", extra={"destination_id": args[0], "error": str(exc)})
        return None


# --- Sending to SQS --------------------------------------------------------------------------


def _addressed(destination: Destination) -> dict[str, str]:
    """The start of a queue message (or dead letter) for one destination: its kind and id."""
    if isinstance(destination, Integration):
        return {"kind": "integration", "integration_id": destination.id}
    return {"kind": "delivery", "endpoint_id": destination.id}


def _delivery_message(endpoint: Destination, event: CrmEvent, attempt: int) -> str:
    body = {**_addressed(endpoint), "event": event.model_dump(mode="json"), "attempt": attempt}
    return json.dumps(body, separators=(",", ":"))


def _queue_deliveries(deliveries: list[tuple[Destination, int, int]], event: CrmEvent) -> None:
    """Queue (destination, attempt, delay seconds) deliveries of one event on the CRM events queue."""
    url = settings().crm_events_queue_url
    if not url:
        raise DeliveryQueueUnavailable("CRM_EVENTS_QUEUE_URL is not set: retries have nowhere to go")
    sqs = aws.client("sqs")
    for start in range(0, len(deliveries), 10):
        chunk = deliveries[start : start + 10]
        try:
            response = sqs.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": _delivery_message(endpoint, event, attempt),
                        "DelaySeconds": delay,
                    }
                    for index, (endpoint, attempt, delay) in enumerate(chunk)
                ],
            )
        except Exception as exc:
            raise DeliveryQueueUnavailable(f"could not queue a webhook retry: {exc}") from exc
        if response.get("Failed"):
            raise DeliveryQueueUnavailable(f"could not queue {len(response['Failed'])} webhook retries")


def _dead_letter(endpoint: Destination, event: CrmEvent, attempts: int, error: str) -> None:
    url = settings().crm_events_queue_dlq_url
    if not url:
        raise DeliveryQueueUnavailable("CRM_EVENTS_QUEUE_DLQ_URL is not set: dead letters have nowhere to go")
    record = {
        **_addressed(endpoint),
        "url": endpoint.url,
        "event": event.model_dump(mode="json"),
        "attempts": attempts,
        "last_error": error,
        "dead_lettered_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    try:
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record, separators=(",", ":")))
    except Exception as exc:
        raise DeliveryQueueUnavailable(f"could not dead-letter a webhook delivery: {exc}") from exc


# --- HTTP -----------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: Any = None


def _http() -> Any:
    global _pool
    with _pool_lock:
        if _pool is None:
            import urllib3

            _pool = urllib3.PoolManager(num_pools=20, maxsize=MAX_PARALLEL_DELIVERIES, retries=False)
        return _pool


def signed_headers(endpoint: Destination, event: CrmEvent, body: bytes, now: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers for one attempt: the id stays, the timestamp is the attempt's."""
    from standardwebhooks import Webhook

    sent_at = int(time.time()) if now is None else now
    signature = Webhook(endpoint.secret).sign(event.id, datetime.fromtimestamp(sent_at, UTC), body.decode("utf-8"))
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": signature,
    }


def deliver(endpoint: Destination, event: CrmEvent) -> Outcome:
    """POST the event to the endpoint (or integration) once. Never raises: every failure is an Outcome."""
    try:
        import urllib3

        body = payload(event)
        headers = signed_headers(endpoint, event, body)
        timeout = timeout_seconds()
        response = _http().request(
            "POST",
            endpoint.url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except Exception as exc:
        return Outcome(ok=False, error=_describe(exc))
    try:
        if 200 <= response.status < 300:
            return Outcome(ok=True, status=response.status)
        snippet = _snippet(response)
        return Outcome(
            ok=False,
            status=response.status,
            error=f"HTTP {response.status}" + (f": {snippet}" if snippet else ""),
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    finally:
        _finish(response)


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return f"timeout: no answer within {timeout_seconds():g} s"
    reason = getattr(exc, "reason", None) or exc
    return f"connection error: {type(reason).__name__}: {str(reason)[:ERROR_SNIPPET]}"


def _snippet(response: Any) -> str:
    try:
        raw = response.read(ERROR_SNIPPET, decode_content=True) or b""
    except Exception:
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())[:ERROR_SNIPPET]


def _retry_after(value: str | None) -> int | None:
    if value and value.strip().isdigit():
        return min(MAX_DELAY_SECONDS, int(value.strip()))
    return None


def _finish(response: Any) -> None:
    """Return the connection for reuse when the rest of the answer is small; else close it (an
    endpoint streaming an endless answer must not hold the worker)."""
    try:
        remaining = response.length_remaining
        if remaining is not None and remaining <= 64 * 1024:
            response.drain_conn()
            response.release_conn()
        else:
            response.close()
            response.release_conn()
    except Exception:
        logger.debug("closing a webhook response failed", exc_info=True)
