"""Offers: one waiting task put to one agent, who accepts it, rejects it, or lets it expire.

An offer is decided exactly once (the store's conditions require `pending` for every decision);
a decided offer keeps its outcome and the moment it was decided."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from chalicelib.domain.routing import Task


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # by the agent; the task skips that agent from then on
    EXPIRED = "expired"  # unanswered until `expires_at`; the task skips that agent too
    RESCINDED = "rescinded"  # withdrawn by the hub (agent went offline, conversation resolved)


# The outcomes that hand the task back to the queue and free the agent's slot.
RELEASES = frozenset({OfferStatus.REJECTED, OfferStatus.EXPIRED, OfferStatus.RESCINDED})


class Offer(BaseModel):
    """A task (`queue`, `task_sort_key`) of a conversation, offered to `agent_id` on `channel`."""

    model_config = ConfigDict(extra="ignore")  # stored items carry their keys too

    id: str
    agent_id: str
    conversation_id: str
    customer_id: str
    channel: str
    queue: str
    task_sort_key: str
    task_shard: int = 0
    # The task while it is offered: it leaves its queue partition for the offer's time (so the
    # head of a queue holds only waiting tasks) and goes back in its old place when released.
    task: Task | None = None
    status: OfferStatus = OfferStatus.PENDING
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None

    @classmethod
    def of(cls, task: Task, agent_id: str, offer_id: str, created_at: datetime, expires_at: datetime) -> Offer:
        """A new, pending offer of `task` to `agent_id`."""
        return cls(
            id=offer_id,
            agent_id=agent_id,
            conversation_id=task.conversation_id,
            customer_id=task.customer_id,
            channel=task.channel,
            queue=task.queue,
            task_sort_key=task.sort_key,
            task_shard=task.shard,
            task=task,
            created_at=created_at,
            expires_at=expires_at,
        )

    @property
    def pending(self) -> bool:
        return self.status is OfferStatus.PENDING

    def due(self, now: datetime) -> bool:
        """Its time is up: from `expires_at` on it can no longer be accepted."""
        return self.expires_at <= now
