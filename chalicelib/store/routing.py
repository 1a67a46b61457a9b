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

from datetime import datetime
from typing import Any

from chalicelib.domain.agents import AgentStatus
from chalicelib.domain.customers import ConversationStatus
from chalicelib.domain.ids import is_id
from chalicelib.domain.offers import RELEASES, Offer, OfferStatus
from chalicelib.domain.routing import Task, TaskStatus
from chalicelib.store import keys, table
from chalicelib.store.table import TransactionCancelled


class Lost(Exception):
    """A condition failed: the state changed since it was read."""


def _run(operations: list[dict[str, Any]]) -> None:
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        raise Lost(", ".join(exc.reasons)) from None


def task_item(task: Task) -> dict[str, Any]:
    data = task.model_dump(mode="json", exclude_none=True)
    return {**keys.task_key(task.queue, task.sort_key), "type": "task", **data}


def get_task(queue: str, sort_key: str) -> Task | None:
    if len(queue) > 200 or len(sort_key) > 200:
        return None
    item = table.get(keys.task_key(queue, sort_key))
    return Task.model_validate(item) if item else None


MAX_HEAD_PAGES = 20


def waiting_tasks(queue: str, limit: int = 100) -> list[Task]:
    """The first `limit` tasks still waiting, in service order (the sort key is priority then age).

    Offered tasks keep their place in the partition, so the head can be full of them: read on,
    page by page (bounded), past them to the tasks that are actually waiting."""
    waiting: list[Task] = []
    start: dict[str, str] | None = None
    for _ in range(MAX_HEAD_PAGES):
        items, more = table.query_page(keys.task_partition(queue), "", max(limit, 100), start)
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


def all_tasks(queue: str) -> list[Task]:
    tasks: list[Task] = []
    start: dict[str, str] | None = None
    while True:
        items, more = table.query_page(keys.task_partition(queue), "", 1000, start)
        tasks.extend(Task.model_validate(item) for item in items)
        if not more or not items:
            return tasks
        start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}


def enqueue(task: Task, at: datetime) -> None:
    """Put the conversation in line unless it is already waiting or held by an agent."""
    _run(
        [
            table.update_op(
                keys.conversation_key(task.conversation_id),
                "SET #status = :waiting, waiting_since = :at, task_queue = :queue, task_sort_key = :sk, "
                "updated_at = :at REMOVE assigned_agent_id, assigned_channel, offer_id",
                {"#status": "status"},
                {
                    ":waiting": ConversationStatus.WAITING.value,
                    ":open": ConversationStatus.OPEN.value,
                    ":resolved": ConversationStatus.RESOLVED.value,
                    ":at": at.isoformat(),
                    ":queue": task.queue,
                    ":sk": task.sort_key,
                },
                condition="attribute_exists(pk) AND (#status IN (:open, :resolved) OR "
                "(#status = :waiting AND attribute_not_exists(task_sort_key)))",
            ),
            table.put_op(task_item(task)),
        ]
    )


def _agent_takes(agent_id: str, channel: str, offer_id: str, at: str) -> dict[str, Any]:
    return table.update_op(
        keys.agent_key(agent_id),
        "SET #load.#ch = if_not_exists(#load.#ch, :zero) + :one, total_load = total_load + :one, "
        "active_channel = :ch, last_offer_at = :at ADD offer_ids :offer",
        {"#load": "load", "#ch": channel, "#status": "status", "#capacity": "capacity"},
        {
            ":zero": 0,
            ":one": 1,
            ":ch": channel,
            ":at": at,
            ":offer": {offer_id},
            ":available": AgentStatus.AVAILABLE.value,
            ":true": True,
        },
        condition="#status = :available AND #capacity.#ch > :zero "
        "AND (attribute_not_exists(#load.#ch) OR #load.#ch < #capacity.#ch) "
        "AND (multi_channel = :true OR total_load = :zero OR active_channel = :ch)",
    )


def _agent_releases(
    agent_id: str, channel: str, *, offer_id: str | None = None, conversation_id: str | None = None
) -> dict[str, Any]:
    removes = []
    values: dict[str, Any] = {":one": 1}
    if offer_id:
        removes.append("offer_ids :offer")
        values[":offer"] = {offer_id}
    if conversation_id:
        removes.append("conversation_ids :conversation")
        values[":conversation"] = {conversation_id}
    expression = "SET #load.#ch = #load.#ch - :one, total_load = total_load - :one"
    if removes:
        expression += " DELETE " + ", ".join(removes)
    return table.update_op(
        keys.agent_key(agent_id),
        expression,
        {"#load": "load", "#ch": channel},
        values,
        condition="attribute_exists(pk) AND #load.#ch >= :one",
    )


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
        "status": offer.status.value,
        "created_at": offer.created_at.isoformat(),
        "expires_at": offer.expires_at.isoformat(),
    }
    if offer.decided_at is not None:
        item["decided_at"] = offer.decided_at.isoformat()
    return item


def _offer(item: dict[str, Any]) -> Offer:
    return Offer.model_validate(item)


def create_offer(task: Task, offer: Offer) -> None:
    """Offer a waiting task to an agent with spare capacity, reserving that capacity."""
    assert offer.task_sort_key == task.sort_key and offer.queue == task.queue, "an offer of another task"
    at = offer.created_at.isoformat()
    offer_id = offer.id
    _run(
        [
            table.update_op(
                keys.task_key(task.queue, task.sort_key),
                "SET #status = :offered, offer_id = :offer, version = version + :one",
                {"#status": "status"},
                {
                    ":offered": TaskStatus.OFFERED.value,
                    ":waiting": TaskStatus.WAITING.value,
                    ":offer": offer_id,
                    ":one": 1,
                    ":version": task.version,
                },
                condition="#status = :waiting AND version = :version",
            ),
            _agent_takes(offer.agent_id, offer.channel, offer_id, at),
            table.put_op(offer_item(offer)),
            table.update_op(
                keys.conversation_key(task.conversation_id),
                "SET offer_id = :offer, updated_at = :at",
                {"#status": "status"},
                {":offer": offer_id, ":at": at, ":waiting": ConversationStatus.WAITING.value},
                condition="#status = :waiting AND attribute_not_exists(offer_id)",
            ),
        ]
    )


def get_offer(offer_id: str) -> Offer | None:
    if not is_id(offer_id, "ofr"):
        return None
    item = table.get(keys.offer_key(offer_id))
    return _offer(item) if item else None


def accept_offer(offer: Offer, now: datetime) -> None:
    """The agent takes the conversation: the task leaves the queue; the capacity stays reserved."""
    at = now.isoformat()
    _run(
        [
            table.update_op(
                keys.offer_key(offer.id),
                "SET #status = :accepted, decided_at = :at",
                {"#status": "status"},
                {":accepted": OfferStatus.ACCEPTED.value, ":pending": OfferStatus.PENDING.value, ":at": at},
                condition="#status = :pending AND expires_at > :at",
            ),
            {
                "Delete": {
                    "TableName": table.table_name(),
                    "Key": table.serialize(keys.task_key(offer.queue, offer.task_sort_key)),
                    "ConditionExpression": "offer_id = :offer",
                    "ExpressionAttributeValues": table.serialize({":offer": offer.id}),
                }
            },
            table.update_op(
                keys.conversation_key(offer.conversation_id),
                "SET #status = :assigned, assigned_agent_id = :agent, assigned_channel = :ch, assigned_at = :at, "
                "updated_at = :at REMOVE offer_id, task_queue, task_sort_key, waiting_since",
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
            table.update_op(
                keys.agent_key(offer.agent_id),
                "DELETE offer_ids :offer ADD conversation_ids :conversation",
                {},
                {":offer": {offer.id}, ":conversation": {offer.conversation_id}},
            ),
        ]
    )


def release_offer(offer: Offer, outcome: OfferStatus, now: datetime, exclude_agent: bool) -> None:
    """Rejected, expired or rescinded: the task goes back to waiting in its old place and the
    agent's capacity is freed. `exclude_agent` skips that agent for this task from now on."""
    if outcome not in RELEASES:
        raise ValueError(f"'{outcome}' does not release an offer")
    at = now.isoformat()
    task_expression = "SET #status = :waiting, version = version + :one REMOVE offer_id"
    values: dict[str, Any] = {":waiting": TaskStatus.WAITING.value, ":one": 1, ":offer": offer.id}
    if exclude_agent:
        task_expression = task_expression.replace(
            " REMOVE", ", excluded_agents = list_append(if_not_exists(excluded_agents, :none), :agent) REMOVE"
        )
        values.update({":none": [], ":agent": [offer.agent_id]})
    _run(
        [
            table.update_op(
                keys.offer_key(offer.id),
                "SET #status = :outcome, decided_at = :at",
                {"#status": "status"},
                {":outcome": outcome.value, ":pending": OfferStatus.PENDING.value, ":at": at},
                condition="#status = :pending",
            ),
            table.update_op(
                keys.task_key(offer.queue, offer.task_sort_key),
                task_expression,
                {"#status": "status"},
                values,
                condition="offer_id = :offer",
            ),
            table.update_op(
                keys.conversation_key(offer.conversation_id),
                "SET updated_at = :at REMOVE offer_id",
                {},
                {":at": at, ":offer": offer.id},
                condition="offer_id = :offer",
            ),
            _agent_releases(offer.agent_id, offer.channel, offer_id=offer.id),
        ]
    )


def release_conversation(
    conversation_id: str,
    agent_id: str,
    channel: str,
    now: datetime,
    *,
    resolve: bool,
    customer_id: str,
    requeue: Task | None = None,
) -> None:
    """The agent lets go of a conversation: resolved (remembered for sticky routing) or back in line."""
    at = now.isoformat()
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
            "SET #status = :waiting, waiting_since = :at, task_queue = :queue, task_sort_key = :sk, updated_at = :at "
            "REMOVE assigned_agent_id, assigned_channel",
            {"#status": "status"},
            {
                ":waiting": ConversationStatus.WAITING.value,
                ":assigned": ConversationStatus.ASSIGNED.value,
                ":agent": agent_id,
                ":at": at,
                ":queue": requeue.queue,
                ":sk": requeue.sort_key,
            },
            condition="#status = :assigned AND assigned_agent_id = :agent",
        )
    operations = [conversation_update, _agent_releases(agent_id, channel, conversation_id=conversation_id)]
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
    _run(operations)


def resolve_waiting(conversation_id: str, queue: str, sort_key: str, now: datetime) -> None:
    """Resolve a conversation nobody holds: its task leaves the queue (unless it is being offered)."""
    at = now.isoformat()
    _run(
        [
            table.update_op(
                keys.conversation_key(conversation_id),
                "SET #status = :resolved, resolved_at = :at, updated_at = :at "
                "REMOVE task_queue, task_sort_key, waiting_since",
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
                    "Key": table.serialize(keys.task_key(queue, sort_key)),
                    "ConditionExpression": "#status = :waiting",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": table.serialize({":waiting": TaskStatus.WAITING.value}),
                }
            },
        ]
    )
