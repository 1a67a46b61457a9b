"""Provider status callbacks: move a sent message's delivery status forward, and tell the CRM.

Each status a message reaches is one `message.status_updated` event, keyed by message and status,
so its id is fixed: if queueing it fails the callback answers 503, and the provider's retry (which
finds the status already applied) queues the same event again; the CRM sees it once.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.models import message_view
from chalicelib.domain.messages import FAILURE_STATUSES, Message, StatusUpdate
from chalicelib.domain.timers import DeliveryFailed
from chalicelib.observability import logger
from chalicelib.services import events, timers
from chalicelib.services.errors import Unavailable
from chalicelib.store import thread


def record_status(update: StatusUpdate) -> bool:
    """True when the message's stored status changed.

    A provider may report a status before the send that caused it has been recorded (Twilio's
    first callbacks can beat the API response). Such a status is kept and applied when the
    message is recorded (`catch_up`); the second look after keeping it closes the gap where the
    message is recorded in between."""
    stored = thread.find_provider_message(update.provider, update.provider_message_id)
    if stored is None:
        thread.keep_early_status(update)
        stored = thread.find_provider_message(update.provider, update.provider_message_id)
        if stored is None:
            logger.info(
                "status kept until its message is recorded",
                extra={"provider": update.provider, "provider_message_id": update.provider_message_id},
            )
            return False
    changed = thread.apply_status(stored, update)
    logger.info(
        "delivery status",
        extra={
            "message_id": stored.message_id,
            "status": update.status.value,
            "error_code": update.error_code,
            "applied": changed is not None,
        },
    )
    if changed is not None:
        _announce(changed)
    else:
        # A repeat of the callback that moved the message here may follow a failed announcement.
        current = thread.get_message(stored.conversation_id, stored.message_id)
        if current is not None and current.status is update.status:
            _announce(current)
    if update.status in FAILURE_STATUSES and stored.direction == "outbound":
        # A notification falls back to its next channel, through the timer queue (its handler is
        # idempotent: a repeat does nothing).
        timers.schedule_in(
            DeliveryFailed(message_id=stored.message_id, status=update.status, error_code=update.error_code), 0
        )
    return changed is not None


def catch_up(provider: str, provider_message_id: str) -> None:
    """Apply statuses that arrived before the message was recorded, in delivery order."""
    for update in thread.early_statuses(provider, provider_message_id):
        record_status(update)


def status_event(message: Message) -> tuple[str, dict[str, Any], str]:
    """(type, data, key) of the `message.status_updated` event for the status `message` is in."""
    data: dict[str, Any] = {
        "message": message_view(message),
        "status": message.status.value,
        "customer_id": message.customer_id,
        "conversation_id": message.conversation_id,
    }
    if message.status in FAILURE_STATUSES:
        data["error_code"] = message.error_code
        data["error_message"] = message.error_message
    return "message.status_updated", data, f"{message.id}:{message.status.value}"


def _announce(message: Message) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        events.emit_many([status_event(message)])
    except (events.EventQueueUnavailable, BotoCoreError, ClientError) as exc:
        logger.warning("status event not queued", extra={"message_id": message.id, "error": type(exc).__name__})
        raise Unavailable("the status is stored but the CRM event could not be queued; retry") from exc
