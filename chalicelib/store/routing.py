"""Routing state changes, each one DynamoDB transaction whose conditions keep the invariants:

- an agent never holds more offers + conversations on a channel than its capacity there
  (`load.<channel> < capacity.<channel>` is a condition of every offer);
- a conversation has at most one task, one pending offer and one agent (conditions on the
  conversation's status and on the task's and offer's own status);
- an offer is accepted, rejected, expired or rescinded exactly once (all require `pending`).

A failed condition means another worker got there first: callers re-read and decide again.
Tasks and offers go in and out as domain models (`Task`, `Offer`); their items keep the format
they have always had, so existing data reads as before.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from chalicelib.config import settings
from chalicelib.domain.agents import Agent
from chalicelib.domain.customers import ConversationStatus
from chalicelib.domain.ids import is_id
from chalicelib.domain.offers import RELEASES, Offer, OfferStatus
from chalicelib.domain.routing import Task, TaskStatus
from chalicelib.store import agents as agent_store
from chalicelib.store import keys, table
from chalicelib.store.table import TransactionCancelled


class Lost(Exception):
    """A condition failed: the state changed since it was read. `agent_moved`: it was the agent
    (another offer, release or status change got there first); read it again and retry."""

    def __init__(self, reasons: str, agent_moved: bool = False) -> None:
        super().__init__(reasons)
        self.agent_moved = agent_moved


def _run(operations: list[dict[str, Any]], agent_at: int | None = None) -> None:
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        moved = agent_at is not None and (exc.failed_at(agent_at) or exc.conflicted)
        raise Lost(", ".join(exc.reasons), agent_moved=moved) from None


def task_shard(conversation_id: str) -> int:
    """The queue partition a conversation's task goes to (and the index shard searched first)."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % settings().routing_shards


def task_item(task: Task) -> dict[str, Any]:
    data = task.model_dump(mode="json", exclude_none=True)
    return {**keys.task_key(task.queue, task.sort_key, task.shard), "type": "task", **data}


def get_task(queue: str, sort_key: str, shard: int = 0) -> Task | None:
    if len(queue) > 200 or len(sort_key) > 200 or not 0 <= shard < 1000:
        return None
    item = table.get(keys.task_key(queue, sort_key, shard))
    return Task.model_validate(item) if item else None


HEAD_PAGE = 25
MAX_HEAD_PAGES = 4


def waiting_tasks(queue: str, shard: int, limit: int = HEAD_PAGE) -> list[Task]:
    """The first `limit` tasks still waiting in one queue partition, in service order (the sort
    key is priority then age). Offered tasks keep their place, so the head may start with them:
    read on past them, at most MAX_HEAD_PAGES pages (offers last seconds; this stays small)."""
    waiting: list[Task] = []
    start: dict[str, str] | None = None
    for _ in range(MAX_HEAD_PAGES):
        items, more = table.query_page(keys.task_partition(queue, shard), "", limit, start)
        for item in items:
            task = Task.model_validate(item)
            if task.status is TaskStatus.WAITING:
                waiting.append(task)
                if len(waiting) >= limit:
                    return waiting
        if not more or not items:
            break
        start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}
    return waiting


def waiting_ahead_of(task: Task, limit: int = HEAD_PAGE) -> list[Task]:
    """Tasks of the same queue partition ahead of `task` (higher priority, or as high and older)
    and still waiting: one Query of at most `limit` items."""
    items = table.query_below(keys.task_partition(task.queue, task.shard), task.sort_key, limit)
    ahead = (Task.model_validate(item) for item in items)
    return [other for other in ahead if other.status is TaskStatus.WAITING]


def all_tasks(queue: str) -> list[Task]:
    """Every task of a queue, over all its partitions (operators' views and tests)."""
    tasks: list[Task] = []
    for shard in range(settings().routing_shards):
        start: dict[str, str] | None = None
        while True:
            items, more = table.query_page(keys.task_partition(queue, shard), "", 1000, start)
            tasks.extend(Task.model_validate(item) for item in items)
            if not more or not items:
                break
            start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}
    return sorted(tasks, key=lambda task: task.sort_key)


def enqueue(task: Task, at: datetime) -> None:
    """Put the conversation in line unless it is already waiting or held by an agent."""
    _run(
        [
            table.update_op(
                keys.conversation_key(task.conversation_id),
                "SET #status = :waiting, waiting_since = :at, task_queue = :queue, task_sort_key = :sk, "
                "task_shard = :shard, updated_at = :at REMOVE assigned_agent_id, assigned_channel, offer_id",
                {"#status": "status"},
                {
                    ":waiting": ConversationStatus.WAITING.value,
                    ":open": ConversationStatus.OPEN.value,
                    ":resolved": ConversationStatus.RESOLVED.value,
                    ":at": at.isoformat(),
                    ":queue": task.queue,
                    ":sk": task.sort_key,
                    ":shard": task.shard,
                },
                condition="attribute_exists(pk) AND (#status IN (:open, :resolved) OR "
                "(#status = :waiting AND attribute_not_exists(task_sort_key)))",
            ),
            table.put_op(task_item(task)),
        ]
    )


def enqueue_offered(task: Task, offer: Offer, agent: Agent) -> Agent:
    """Put the conversation in line and offer it at once, in one transaction: the task is born
    offered (held in its offer, never written to the queue). Conditions as `enqueue` and
    `create_offer`; returns the agent as now stored."""
    assert offer.task_sort_key == task.sort_key and offer.queue == task.queue, "an offer of another task"
    if not agent.can_take(offer.channel):
        raise Lost("the agent cannot take this channel now", agent_moved=True)
    at = offer.created_at.isoformat()
    offered = offer.model_copy(
        update={"task": task.model_copy(update={"status": TaskStatus.OFFERED, "offer_id": offer.id})}
    )
    after = agent_store.next_version(agent, agent.taking(offer.id, offer.channel, offer.created_at))
    _run(
        [
            table.update_op(
                keys.conversation_key(task.conversation_id),
                "SET #status = :waiting, waiting_since = :at, task_queue = :queue, task_sort_key = :sk, "
                "task_shard = :shard, offer_id = :offer, updated_at = :at "
                "REMOVE assigned_agent_id, assigned_channel",
                {"#status": "status"},
                {
                    ":waiting": ConversationStatus.WAITING.value,
                    ":open": ConversationStatus.OPEN.value,
                    ":resolved": ConversationStatus.RESOLVED.value,
                    ":at": at,
                    ":queue": task.queue,
                    ":sk": task.sort_key,
                    ":shard": task.shard,
                    ":offer": offer.id,
                },
                condition="attribute_exists(pk) AND (#status IN (:open, :resolved) OR "
                "(#status = :waiting AND attribute_not_exists(task_sort_key)))",
            ),
            table.put_op(offer_item(offered)),
            *agent_store.change_ops(agent, after),
        ],
        agent_at=2,
    )
    return after


def offer_item(offer: Offer) -> dict[str, Any]:
    """The stored form of an offer. Timestamps are `isoformat()` strings (`+00:00`, not pydantic's
    `Z`): `accept_offer` compares `expires_at` with such a string inside DynamoDB."""
    item: dict[str, Any] = {
        **keys.offer_key(offer.id),
        "type": "offer",
        "id": offer.id,
        "agent_id": offer.agent_id,
        "conversation_id": offer.conversation_id,
        "customer_id": offer.customer_id,
        "channel": offer.channel,
        "queue": offer.queue,
        "task_sort_key": offer.task_sort_key,
        "task_shard": offer.task_shard,
        "status": offer.status.value,
        "created_at": offer.created_at.isoformat(),
        "expires_at": offer.expires_at.isoformat(),
    }
    if offer.decided_at is not None:
        item["decided_at"] = offer.decided_at.isoformat()
    if offer.task is not None:
        item["task"] = offer.task.model_dump(mode="json", exclude_none=True)
    return item


def _offer(item: dict[str, Any]) -> Offer:
    return Offer.model_validate(item)


def create_offer(task: Task, offer: Offer, agent: Agent) -> Agent:
    """Offer a waiting task to an agent with spare capacity, reserving that capacity. The task
    leaves its queue partition for the offer's time, kept in the offer, so a queue's head holds only
    waiting tasks. `agent` is the agent as read (from the availability index or its item);
    returns it as now stored."""
    assert offer.task_sort_key == task.sort_key and offer.queue == task.queue, "an offer of another task"
    if not agent.can_take(offer.channel):
        raise Lost("the agent cannot take this channel now", agent_moved=True)
    at = offer.created_at.isoformat()
    offer_id = offer.id
    offered = offer.model_copy(
        update={"task": task.model_copy(update={"status": TaskStatus.OFFERED, "offer_id": offer_id})}
    )
    after = agent_store.next_version(agent, agent.taking(offer_id, offer.channel, offer.created_at))
    _run(
        [
            table.delete_op(
                keys.task_key(task.queue, task.sort_key, task.shard),
                "#status = :waiting AND version = :version",
                {":waiting": TaskStatus.WAITING.value, ":version": task.version},
                {"#status": "status"},
            ),
            table.put_op(offer_item(offered)),
            table.update_op(
                keys.conversation_key(task.conversation_id),
                "SET offer_id = :offer, updated_at = :at",
                {"#status": "status"},
                {":offer": offer_id, ":at": at, ":waiting": ConversationStatus.WAITING.value},
                condition="#status = :waiting AND attribute_not_exists(offer_id)",
            ),
            *agent_store.change_ops(agent, after),
        ],
        agent_at=3,
    )
    return after


def get_offer(offer_id: str) -> Offer | None:
    if not is_id(offer_id, "ofr"):
        return None
    item = table.get(keys.offer_key(offer_id))
    return _offer(item) if item else None


def accept_offer(offer: Offer, now: datetime, agent: Agent) -> Agent:
    """The agent takes the conversation (the task is gone: it left the queue with the offer);
    the capacity stays reserved."""
    at = now.isoformat()
    after = agent_store.next_version(agent, agent.accepting(offer.id, offer.conversation_id))
    operations = [
        table.update_op(
            keys.offer_key(offer.id),
            "SET #status = :accepted, decided_at = :at",
            {"#status": "status"},
            {":accepted": OfferStatus.ACCEPTED.value, ":pending": OfferStatus.PENDING.value, ":at": at},
            condition="#status = :pending AND expires_at > :at",
        ),
        table.update_op(
            keys.conversation_key(offer.conversation_id),
            "SET #status = :assigned, assigned_agent_id = :agent, assigned_channel = :ch, assigned_at = :at, "
            "updated_at = :at REMOVE offer_id, task_queue, task_sort_key, task_shard, waiting_since",
            {"#status": "status"},
            {
                ":assigned": ConversationStatus.ASSIGNED.value,
                ":agent": offer.agent_id,
                ":ch": offer.channel,
                ":at": at,
                ":offer": offer.id,
            },
            condition="offer_id = :offer",
        ),
    ]
    if offer.task is None:  # an offer made while offered tasks stayed in their queue: it is still there
        operations.append(
            table.delete_op(
                keys.task_key(offer.queue, offer.task_sort_key, offer.task_shard),
                "offer_id = :offer",
                {":offer": offer.id},
            )
        )
    agent_at = len(operations)
    _run([*operations, *agent_store.change_ops(agent, after)], agent_at=agent_at)
    return after


def release_offer(offer: Offer, outcome: OfferStatus, now: datetime, exclude_agent: bool, agent: Agent) -> Agent:
    """Rejected, expired or rescinded: the task goes back to waiting in its old place (its sort
    key is unchanged) and the agent's capacity is freed. `exclude_agent` skips that agent for this
    task from now on."""
    if outcome not in RELEASES:
        raise ValueError(f"'{outcome}' does not release an offer")
    at = now.isoformat()
    after = agent_store.next_version(agent, agent.releasing(offer.channel, offer_id=offer.id))
    _run(
        [
            table.update_op(
                keys.offer_key(offer.id),
                "SET #status = :outcome, decided_at = :at",
                {"#status": "status"},
                {":outcome": outcome.value, ":pending": OfferStatus.PENDING.value, ":at": at},
                condition="#status = :pending",
            ),
            _task_back(offer, exclude_agent),
            table.update_op(
                keys.conversation_key(offer.conversation_id),
                "SET updated_at = :at REMOVE offer_id",
                {},
                {":at": at, ":offer": offer.id},
                condition="offer_id = :offer",
            ),
            *agent_store.change_ops(agent, after),
        ],
        agent_at=3,
    )
    return after


def _task_back(offer: Offer, exclude_agent: bool) -> dict[str, Any]:
    task = offer.task
    if task is not None:
        excluded = [*task.excluded_agents, offer.agent_id] if exclude_agent else task.excluded_agents
        waiting = task.model_copy(
            update={
                "status": TaskStatus.WAITING,
                "offer_id": None,
                "version": task.version + 1,
                "excluded_agents": list(dict.fromkeys(excluded)),
            }
        )
        return table.put_op(task_item(waiting))
    # An offer made while offered tasks stayed in their queue: the task is updated where it is.
    expression = "SET #status = :waiting, version = version + :one REMOVE offer_id"
    values: dict[str, Any] = {":waiting": TaskStatus.WAITING.value, ":one": 1, ":offer": offer.id}
    if exclude_agent:
        expression = expression.replace(
            " REMOVE", ", excluded_agents = list_append(if_not_exists(excluded_agents, :none), :agent) REMOVE"
        )
        values.update({":none": [], ":agent": [offer.agent_id]})
    return table.update_op(
        keys.task_key(offer.queue, offer.task_sort_key, offer.task_shard),
        expression,
        {"#status": "status"},
        values,
        condition="offer_id = :offer",
    )


def release_conversation(
    conversation_id: str,
    agent: Agent,
    channel: str,
    now: datetime,
    *,
    resolve: bool,
    customer_id: str,
    requeue: Task | None = None,
) -> Agent:
    """The agent lets go of a conversation: resolved (remembered for sticky routing) or back in
    line. `agent` is the agent as read; returns it as now stored."""
    at = now.isoformat()
    agent_id = agent.id
    if resolve:
        conversation_update = table.update_op(
            keys.conversation_key(conversation_id),
            "SET #status = :resolved, resolved_at = :at, updated_at = :at REMOVE assigned_agent_id, assigned_channel",
            {"#status": "status"},
            {
                ":resolved": ConversationStatus.RESOLVED.value,
                ":assigned": ConversationStatus.ASSIGNED.value,
                ":agent": agent_id,
                ":at": at,
            },
            condition="#status = :assigned AND assigned_agent_id = :agent",
        )
    else:
        assert requeue is not None
        conversation_update = table.update_op(
            keys.conversation_key(conversation_id),
            "SET #status = :waiting, waiting_since = :at, task_queue = :queue, task_sort_key = :sk, "
            "task_shard = :shard, updated_at = :at REMOVE assigned_agent_id, assigned_channel",
            {"#status": "status"},
            {
                ":waiting": ConversationStatus.WAITING.value,
                ":assigned": ConversationStatus.ASSIGNED.value,
                ":agent": agent_id,
                ":at": at,
                ":queue": requeue.queue,
                ":sk": requeue.sort_key,
                ":shard": requeue.shard,
            },
            condition="#status = :assigned AND assigned_agent_id = :agent",
        )
    if not agent.holds_slot(channel, conversation_id=conversation_id):
        raise Lost(f"agent '{agent_id}' does not hold conversation '{conversation_id}'")
    after = agent_store.next_version(agent, agent.releasing(channel, conversation_id=conversation_id))
    operations = [conversation_update]
    if resolve:
        operations.append(
            table.update_op(
                keys.customer_key(customer_id),
                "SET last_agent_id = :agent, last_resolved_at = :at",
                {},
                {":agent": agent_id, ":at": at},
            )
        )
    if requeue is not None:
        operations.append(table.put_op(task_item(requeue)))
    agent_at = len(operations)
    _run([*operations, *agent_store.change_ops(agent, after)], agent_at=agent_at)
    return after


def resolve_waiting(conversation_id: str, queue: str, sort_key: str, shard: int, now: datetime) -> None:
    """Resolve a conversation nobody holds: its task leaves the queue (unless it is being offered)."""
    at = now.isoformat()
    _run(
        [
            table.update_op(
                keys.conversation_key(conversation_id),
                "SET #status = :resolved, resolved_at = :at, updated_at = :at "
                "REMOVE task_queue, task_sort_key, task_shard, waiting_since",
                {"#status": "status"},
                {
                    ":resolved": ConversationStatus.RESOLVED.value,
                    ":waiting": ConversationStatus.WAITING.value,
                    ":at": at,
                    ":sk": sort_key,
                },
                condition="#status = :waiting AND task_sort_key = :sk AND attribute_not_exists(offer_id)",
            ),
            {
                "Delete": {
                    "TableName": table.table_name(),
                    "Key": table.serialize(keys.task_key(queue, sort_key, shard)),
                    "ConditionExpression": "#status = :waiting",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": table.serialize({":waiting": TaskStatus.WAITING.value}),
                }
            },
        ]
    )
