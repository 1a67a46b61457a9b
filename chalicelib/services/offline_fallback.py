"""A customer never misses an answer because they closed the web chat tab.

When an agent replies on web chat, services/replies.py queues a `WebchatReplySent` timer (due at
once). When it fires and the visitor's page has not polled for `WEBCHAT_OFFLINE_AFTER_SECONDS`
(default 60; an open page polls at least every ~25 s), the reply also goes out as a notification
on the customer's preferred reachable channel, per their consent, with a single-use link back to
the chat. Best effort: the reply itself is already stored and visible in the chat; a failed
fallback is logged, and the notification's Idempotency-Key (`offline-<message id>`) keeps a
redelivered timer from notifying twice.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.notification_models import NotificationRequest, notification_view
from chalicelib.config import settings
from chalicelib.domain.timers import WebchatReplySent
from chalicelib.observability import logger
from chalicelib.services import links, notifications, webchat
from chalicelib.store import thread

SUMMARY_CHARS = 300


def handle_timer(reply: WebchatReplySent) -> dict[str, Any] | None:
    """The notification sent (its API view), or None when the visitor is still on the page."""
    if webchat.is_connected(reply.conversation_id, settings().webchat_offline_after_seconds):
        return None
    message = thread.get_message(reply.conversation_id, reply.message_id)
    if message is None:
        return None
    try:
        url = links.webchat_return_url(reply.customer_id, reply.conversation_id, f"offline_fallback:{message.id}")
        summary = message.body if len(message.body) <= SUMMARY_CHARS else message.body[: SUMMARY_CHARS - 1] + "…"
        text = f"{reply.agent_name} replied to your chat: {summary}\nContinue the conversation here: {url}"
        request = NotificationRequest.model_validate({"customer": {"id": reply.customer_id}, "text": text})
        done = notifications.create_notification(request, f"offline-{message.id}")
    except Exception as exc:  # the reply stands; the fallback must never turn it into an error
        logger.warning("offline fallback failed", extra={"message_id": message.id, "error": type(exc).__name__})
        return None
    logger.info(
        "offline fallback",
        extra={"message_id": message.id, "notification_id": done.result.id, "customer_id": reply.customer_id},
    )
    return notification_view(done.result)
