"""Provider status callbacks: move a sent message's delivery status forward."""

from __future__ import annotations

from chalicelib.domain.messages import StatusUpdate
from chalicelib.observability import logger
from chalicelib.store import thread


def record_status(update: StatusUpdate) -> bool:
    """True when the message's stored status changed."""
    stored = thread.find_provider_message(update.provider, update.provider_message_id)
    if stored is None:
        logger.warning(
            "status callback for a message the hub did not store",
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
    return changed is not None
