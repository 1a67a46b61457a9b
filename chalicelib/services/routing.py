"""Routing tasks, as the routing worker consumes them.

This issue's routing only marks the conversation as waiting for an agent; assignment builds on it.
Handling a task twice is harmless: marking a conversation waiting is idempotent.
"""

from __future__ import annotations

from chalicelib.domain.messages import utcnow
from chalicelib.domain.routing_task import RoutingTask
from chalicelib.observability import logger
from chalicelib.store import thread


def handle_routing_task(task: RoutingTask) -> None:
    changed = thread.mark_waiting(task.conversation_id, utcnow().isoformat())
    logger.info(
        "conversation queued for an agent" if changed else "conversation already held by an agent",
        extra={"conversation_id": task.conversation_id, "message_id": task.message_id},
    )
