"""A customer never misses an answer because they closed the web chat tab.

When an agent replies on web chat and the visitor's page has not polled for
`WEBCHAT_OFFLINE_AFTER_SECONDS` (default 60; an open page polls at least every ~25 s), the reply
also goes out as a notification on the customer's preferred reachable channel, per their consent,
with a single-use link back to the chat. Best effort: the reply itself is already stored and
visible in the chat; a failed fallback is logged, and the notification's Idempotency-Key
(`offline-<message id>`) keeps a retried reply from notifying twice.
"""

from __future__ import annotations

import os
from typing import Any

from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel, Message
from chalicelib.observability import logger

SUMMARY_CHARS = 300


def away_for() -> float:
    return float(os.environ.get("WEBCHAT_OFFLINE_AFTER_SECONDS", "60"))


def notify_if_away(message: Message, customer: Customer, agent_name: str) -> dict[str, Any] | None:
    """The notification sent (its API view), or None when the visitor is still on the page."""
    from chalicelib.services import links, notifications, webchat

    if message.channel is not Channel.WEBCHAT or webchat.is_connected(message.conversation_id, away_for()):
        return None
    try:
        url = links.webchat_return_url(customer.id, message.conversation_id, f"offline_fallback:{message.id}")
        summary = message.body if len(message.body) <= SUMMARY_CHARS else message.body[: SUMMARY_CHARS - 1] + "…"
        text = f"{agent_name} replied to your chat: {summary}\nContinue the conversation here: {url}"
        outcome = notifications.create_notification(
            {"customer": {"id": customer.id}, "text": text}, f"offline-{message.id}"
        )
    except Exception as exc:  # the reply stands; the fallback must never turn it into an error
        logger.warning("offline fallback failed", extra={"message_id": message.id, "error": type(exc).__name__})
        return None
    logger.info(
        "offline fallback",
        extra={"message_id": message.id, "status": outcome.status_code, "customer_id": customer.id},
    )
    return outcome.body if outcome.status_code < 300 else None
