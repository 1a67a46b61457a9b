"""Business metrics as CloudWatch Embedded Metric Format (EMF): JSON lines on stdout that
CloudWatch Logs turns into metrics. Emitting one costs no AWS request.

Namespace `Omnihub` (the setting POWERTOOLS_METRICS_NAMESPACE), dimension `service` = `omnihub`
(POWERTOOLS_SERVICE_NAME), both read from `chalicelib.config`, plus low-cardinality dimensions
only:

    InboundMessages          Count    channel           (each new provider message, once)
    InboundDuplicates        Count    channel           (provider retries of a stored message)
    OutboundMessages         Count    channel, result   (result: sent | failed | unavailable)
    AssignmentLatency        Seconds  -                 (task queued -> offer to an agent)
    OffersExpired            Count    -
    WebhookDeliveryFailures  Count    -                 (each failed CRM webhook attempt)
    WebhookDeadLetters       Count    -                 (deliveries given up and dead-lettered)

InboundMessages and OutboundMessages also carry a roll-up dimension set without `channel`
(`[service]` and `[service, result]`), so an alarm on all channels needs no metric math.

EMF allows one dimension set per metric object, and Powertools' `Metrics` class keeps its metric
and dimension sets in class attributes shared by every instance (one `Metrics` per dimension set
would mix them). So values are buffered here per dimension set, thread-safely, and `flush()`
prints one EMF object per dimension set through Powertools' `AmazonCloudWatchEMFProvider` (which
also splits at EMF's 100-value limit). `flush()` runs at the end of every invocation: the
`flushed` decorator on the handlers/ functions, and the HTTP middleware for the Chalice API.

Metrics never break a request: every function here logs and swallows its own errors.
POWERTOOLS_METRICS_DISABLED=true (set by the local stack) turns them off; nothing is buffered.
Importing this module loads nothing beyond the standard library and the shared logger.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from chalicelib.observability import logger

SEND_RESULTS = ("sent", "failed", "unavailable")
_FLUSH_AT = 100  # buffered values; beyond this a flush happens at once (EMF's limit per metric)

F = TypeVar("F", bound=Callable[..., Any])

# (dimensions, roll-up dimension sets) -> metric name -> (unit, values)
_Key = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, ...], ...]]
_lock = threading.Lock()
_buffer: dict[_Key, dict[str, tuple[str, list[float]]]] = {}
_buffered = 0


def _never_raises(function: F) -> F:
    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception:
            logger.warning(
                "metrics: could not record or flush", extra={"metric_call": function.__name__}, exc_info=True
            )
            return None

    return guarded  # type: ignore[return-value]


def _disabled() -> bool:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    return is_metrics_disabled()


def _label(value: Any) -> str:
    return str(getattr(value, "value", value))


def _record(
    name: str, unit: str, value: float, dimensions: dict[str, str], rollups: tuple[tuple[str, ...], ...] = ()
) -> None:
    global _buffered
    if _disabled():
        return
    key: _Key = (tuple(dimensions.items()), rollups)
    with _lock:
        metrics = _buffer.setdefault(key, {})
        metrics.setdefault(name, (unit, []))[1].append(float(value))
        _buffered += 1
        full = _buffered >= _FLUSH_AT
    if full:
        flush()


# --- What the hub measures ----------------------------------------------------------------------


@_never_raises
def inbound_message(channel: Any, *, duplicate: bool = False) -> None:
    """A provider message was stored (or, with duplicate=True, a provider retried a stored one)."""
    name = "InboundDuplicates" if duplicate else "InboundMessages"
    _record(name, "Count", 1, {"channel": _label(channel)}, rollups=((),))


@_never_raises
def outbound_send(channel: Any, result: str) -> None:
    """One provider send: `sent`, `failed` (the provider refused it) or `unavailable` (not reached)."""
    if result not in SEND_RESULTS:
        raise ValueError(f"unknown send result {result!r}")
    _record("OutboundMessages", "Count", 1, {"channel": _label(channel), "result": result}, rollups=(("result",),))


@_never_raises
def assignment_latency(queued_at: datetime | float, offered_at: datetime | None = None) -> None:
    """Seconds from a task entering the queue to its offer to an agent (pass the two moments, or
    the seconds)."""
    if isinstance(queued_at, datetime):
        seconds = ((offered_at or datetime.now(queued_at.tzinfo)) - queued_at).total_seconds()
    else:
        seconds = float(queued_at)
    _record("AssignmentLatency", "Seconds", max(0.0, seconds), {})


@_never_raises
def offer_expired() -> None:
    _record("OffersExpired", "Count", 1, {})


@_never_raises
def webhook_delivery_failed(*, dead_lettered: bool = False) -> None:
    """A CRM webhook attempt failed; with dead_lettered=True, its delivery was given up."""
    _record("WebhookDeadLetters" if dead_lettered else "WebhookDeliveryFailures", "Count", 1, {})


def counts_sends(send: F) -> F:
    """Decorate a `send(plan, ...)` function: each call counts as OutboundMessages by
    `plan.channel`, `sent` when it returns, `failed` on ProviderRejected, `unavailable` on
    ProviderUnavailable (other errors are not a send outcome and are not counted)."""

    @functools.wraps(send)
    def counted(plan: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            sent = send(plan, *args, **kwargs)
        except Exception as exc:
            _count_failed_send(plan, exc)
            raise
        outbound_send(getattr(plan, "channel", "unknown"), "sent")
        return sent

    return counted  # type: ignore[return-value]


@_never_raises
def _count_failed_send(plan: Any, exc: Exception) -> None:
    from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable

    if isinstance(exc, ProviderRejected):
        outbound_send(getattr(plan, "channel", "unknown"), "failed")
    elif isinstance(exc, ProviderUnavailable):
        outbound_send(getattr(plan, "channel", "unknown"), "unavailable")


# --- Flushing -------------------------------------------------------------------------------------


@_never_raises
def flush() -> None:
    """Print what is buffered as EMF (one JSON line per dimension set) and empty the buffer."""
    global _buffered
    with _lock:
        if not _buffer:
            return
        taken = dict(_buffer)
        _buffer.clear()
        _buffered = 0
    if _disabled():
        return
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from chalicelib.config import settings

    namespace = settings().powertools_metrics_namespace
    service = settings().powertools_service_name
    for (dimensions, rollups), metrics in taken.items():
        provider = AmazonCloudWatchEMFProvider(
            namespace=namespace, service=service, default_dimensions={"service": service}
        )
        for name, value in dimensions:
            provider.add_dimension(name=name, value=value)
        for rollup in rollups:
            provider.add_dimensions(service=service, **{name: value for name, value in dimensions if name in rollup})
        for name, (unit, values) in metrics.items():
            for value in values:
                provider.add_metric(name=name, unit=unit, value=value)  # prints itself at 100 values
        if provider.metric_set:
            provider.flush_metrics()


def discard() -> None:
    """Forget whatever is buffered (tests start clean with it)."""
    global _buffered
    with _lock:
        _buffer.clear()
        _buffered = 0


def flushed(handler: F) -> F:
    """Flush metrics when a Lambda handler returns or raises (the handlers/ functions' equivalent
    of Powertools' `log_metrics`, for every dimension set)."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            flush()

    return wrapper  # type: ignore[return-value]
