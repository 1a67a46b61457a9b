"""Routing: conversations wait in line as tasks and are offered to agents, one offer at a time.

Matching is event driven: a new task is matched at once; an agent becoming available or
freeing capacity (resolve, reject, expiry, transfer) asks for the best waiting task it can take;
timers re-match a task when its sticky wait ends or its skills relax. The pure policy lives in
domain/routing.py; every state change is one conditional transaction in store/routing.py, so
concurrent workers can only lose a race, never break an invariant. A loser re-reads and moves on.

AWS requests for one assignment of a new inbound conversation (the routing worker, after ingest),
one operation name per request, as measured by bench/routing.py:
  reads      BatchGetItem conversation + customer + message + analytics cycle head
  match      Query the availability index (the task's home shard: best candidates first)
  order      Query the tasks ahead of it in its queue partition (none may be skipped)
  offer      SendMessage the offer's timeout
  queue+offer TransactWriteItems conversation + offer holding the task + agent + its entries + roster
  CRM        SendMessageBatch customer.created, message.created, conversation.queued, offer.created
  analytics  TransactWriteItems cycle + counts + gauges (services/analytics.py; head read above)
  = 7 to 8 requests, none of them a Scan, whatever the number of agents or waiting tasks.
The eighth is one more index Query when the home shard has nobody eligible (the shard where this
worker last found someone is read next). Items read: the index head (20 entries a page; a further
page only past candidates without the skills, 3 at most) and the
tasks ahead (at most 20), so the cost stays flat from 10 agents to 20,000 (bench/routing.py
--agents N --available K). An agent freeing capacity (match_agent) reads the head of every
queue partition: queues x ROUTING_SHARDS Queries of 10 waiting tasks, never a whole queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from chalicelib import metrics, queue
from chalicelib.api.models import agent_view, conversation_view, customer_view, message_view, offer_view
from chalicelib.config import settings
from chalicelib.domain.agents import ALL_CHANNELS, Agent, AgentStatus
from chalicelib.domain.analytics import CycleState
from chalicelib.domain.customers import ControllerKind, Conversation, ConversationStatus, Customer
from chalicelib.domain.ids import new_id, new_ulid
from chalicelib.domain.messages import Channel, utcnow
from chalicelib.domain.offers import Offer, OfferStatus
from chalicelib.domain.routing import (
    RoutingConfig,
    Task,
    TaskStatus,
    choose_agent,
    choose_tasks,
    classify,
    next_recheck,
    preferred_agent_now,
)
from chalicelib.domain.routing_task import (
    AgentGrace,
    Escalate,
    HandOff,
    MatchAgent,
    MatchTask,
    OfferTimeout,
    RoutingTask,
    TaskRecheck,
)
from chalicelib.observability import logger
from chalicelib.services import auto_replies, bots, consent, control, handoff, sla, surveys, timers
from chalicelib.services import events as crm_events
from chalicelib.services.errors import Conflict, NotFound
from chalicelib.services.routing_config import routing_config
from chalicelib.store import agents as agent_store
from chalicelib.store import analytics as analytics_store
from chalicelib.store import customers as customer_store
from chalicelib.store import routing as routing_store
from chalicelib.store import thread
from chalicelib.store.analytics import Reads
from chalicelib.store.routing import Lost

MATCH_ATTEMPTS = 3
T = TypeVar("T")
AGENT_ATTEMPTS = 5  # re-reads of an agent another worker keeps changing


# --- CRM events ---------------------------------------------------------------------------------


@dataclass
class Outbox:
    """The CRM events one routing step raises, queued together at its end: one SendMessageBatch
    and one analytics fold for the whole step. Offers to auto-accepting agents are accepted after
    their offer.created is out, so a CRM always sees offer.created first."""

    events: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    heads: dict[str, CycleState | None] = field(default_factory=dict)
    auto_accept: list[str] = field(default_factory=list)

    def add(self, event_type: str, data: dict[str, Any], key: str) -> None:
        self.events.append((event_type, data, key))

    def flush(self) -> None:
        events, self.events = self.events, []
        if events:
            # The heads were read before the first batch was counted: stale after it.
            heads, self.heads = self.heads, {}
            _emit(events, heads)
        accepting, self.auto_accept = self.auto_accept, []
        for offer_id in accepting:
            accept_offer(offer_id)


def _emit(events: list[tuple[str, dict[str, Any], str]], heads: dict[str, CycleState | None] | None = None) -> None:
    crm_events.emit_many(events, heads)


def _context(conversation: Conversation, customer: Customer | None = None) -> dict[str, Any]:
    customer = customer or customer_store.get_customer(conversation.customer_id)
    return {
        "conversation": conversation_view(conversation),
        "customer": customer_view(customer) if customer else None,
    }


def _conversation(conversation_id: str) -> Conversation:
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation '{conversation_id}'")
    return conversation


# --- Inbound messages ----------------------------------------------------------------------------


def handle_inbound(task: RoutingTask, *, redelivered: bool = False) -> None:
    """A stored inbound message: tell the CRM, and queue the conversation unless an agent holds it.

    Its CRM events (message.created, and conversation.queued and offer.created when it is queued
    and offered) go out together at the end. A crash before then leaves the routing message on the
    queue; its redelivery finds the conversation in line and raises the same events again (same
    ids, so a CRM sees each once). `redelivered`: SQS delivered this message before."""
    inputs = thread.inbound_inputs(task.conversation_id, task.customer_id, task.message_id)
    conversation, customer, message = inputs.conversation, inputs.customer, inputs.message
    if conversation is None:
        raise NotFound(f"no conversation '{task.conversation_id}'")
    if customer is None or message is None:
        raise NotFound(f"inbound message {task.message_id} is not stored yet")
    outbox = Outbox(heads={conversation.id: inputs.analytics_head})
    queue_name = (
        conversation.task_queue or classify(task.channel.value, customer.attributes, task.text, routing_config()).queue
    )
    context = {"customer": customer_view(customer), "conversation": conversation_view(conversation)}
    if task.new_customer:
        outbox.add("customer.created", context, customer.id)
    answer = surveys.answer_to(conversation, message)
    # The queue the message is classified into: a new cycle is counted in it (analytics); a
    # survey's rating or comment opens no cycle.
    created = {**context, "message": message_view(message), "queue": queue_name}
    if answer is not None:
        created["survey_answer"] = True
    outbox.add("message.created", created, message.id)
    if answer is not None:
        outbox.flush()
        surveys.record(conversation, customer, message, answer)
        return  # a survey's answer: recorded and thanked for, never routed
    if consent.may_be_keyword(customer, message):
        outbox.flush()
        if consent.handle_keyword(customer, conversation, message):
            return  # STOP/START/HELP (or an email unsubscribe): answered and recorded, never routed
    if conversation.status in (ConversationStatus.OPEN, ConversationStatus.RESOLVED):
        # A new cycle: its queue's first controller takes it (humans, the assistant or a bot).
        conversation = control.begin_cycle(conversation, queue_name, task.channel.value, utcnow())
    if conversation.control is not None and conversation.control.controller.is_bot:
        outbox.flush()
        bots.deliver(conversation.control.controller, customer, conversation, message)
        return  # while a bot is in control no routing task exists
    if conversation.control is not None and conversation.control.controller.kind is ControllerKind.NOBODY:
        outbox.flush()
        return
    if auto_replies.may_reply(queue_name):
        outbox.flush()  # the customer's message before any automatic answer to it, for the CRM and analytics
    auto_replies.after_inbound(customer, conversation, message, queue_name, utcnow())
    if conversation.status in (ConversationStatus.OPEN, ConversationStatus.RESOLVED) or (
        conversation.status is ConversationStatus.WAITING and not conversation.task_sort_key
    ):
        _queue_and_match(customer, conversation, task.channel.value, task.text, "inbound", outbox)
    elif conversation.status is ConversationStatus.WAITING and conversation.task_queue:
        if redelivered:
            _replay_routing_events(conversation, customer, outbox)  # a redelivery: raise them again
        else:
            sla.customer_wrote(conversation, message.created_at)
        if not conversation.offer_id:
            outbox.flush()
            # Already in line (a redelivery after a crash, or a follow-up message): make sure it is matched.
            match_task_by_key(conversation.task_queue, str(conversation.task_sort_key), conversation.task_shard)
    else:
        sla.customer_wrote(conversation, message.created_at)  # held by an agent
    outbox.flush()


def _replay_routing_events(conversation: Conversation, customer: Customer, outbox: Outbox) -> None:
    """The conversation.queued and offer.created a crashed first delivery may not have raised."""
    offer = routing_store.get_offer(conversation.offer_id) if conversation.offer_id else None
    task = offer.task if offer is not None else None  # an offered task is kept in its offer
    if task is None:
        task = routing_store.get_task(
            str(conversation.task_queue), str(conversation.task_sort_key), conversation.task_shard
        )
    if task is not None:
        outbox.add("conversation.queued", {**_context(conversation, customer), "task": _task_view(task)}, task.sort_key)
    agent = agent_store.get_agent(offer.agent_id) if offer is not None and offer.pending else None
    if offer is not None and agent is not None:
        outbox.add("offer.created", _offer_data(conversation, customer, offer, agent), offer.id)


def _queue_and_match(
    customer: Customer,
    conversation: Conversation,
    channel: str,
    text: str,
    reason: str,
    outbox: Outbox,
    *,
    preferred: tuple[str | None, datetime | None] | None = None,
) -> None:
    """Queue a conversation and offer it. When the best agent is free and nothing ahead in line
    fits that agent, the conversation is queued and offered in one transaction; otherwise it is
    queued, then matched (which serves what is ahead first), and re-checked later if nobody fits."""
    now = utcnow()
    config = routing_config()
    task = _new_task(
        customer, conversation.id, channel, text, reason, now, preferred=preferred or _sticky(customer, now, config)
    )
    agent = _best_agent(task, now, config)
    if agent is not None and not choose_tasks(agent, routing_store.waiting_ahead_of(task, AHEAD_PAGE), now, config):
        try:
            _offer_at_once(customer, conversation, task, agent, now, outbox)
            return
        except Lost as lost:
            if not lost.agent_moved:
                return  # already waiting or held: the other path owns it
    queued = queue_conversation(customer, conversation, channel, text, reason, outbox=outbox, task=task)
    if queued is None:
        return
    task, waiting = queued
    if match_task(task, outbox, conversation=waiting, customer=customer) is None:
        _schedule_recheck(task, utcnow())


def _offer_at_once(
    customer: Customer, conversation: Conversation, task: Task, agent: Agent, now: datetime, outbox: Outbox
) -> None:
    offer_id = new_id("ofr")
    expires_at = now + timedelta(seconds=routing_config().offer_timeout_seconds)
    offer = Offer.of(task, agent.id, offer_id, now, expires_at)
    timers.schedule(OfferTimeout(offer_id=offer_id), expires_at)  # first, as in _offer
    stored = routing_store.enqueue_offered(task, offer, agent)
    waiting = _waiting_copy(conversation, task, now).model_copy(update={"offer_id": offer_id})
    outbox.add("conversation.queued", {**_context(waiting, customer), "task": _task_view(task)}, task.sort_key)
    outbox.add("offer.created", _offer_data(waiting, customer, offer, stored), offer_id)
    logger.info("offer created", extra={"offer_id": offer_id, "agent_id": agent.id, "queue": task.queue})
    metrics.assignment_latency(task.enqueued_at, now)
    if stored.auto_accept:
        outbox.auto_accept.append(offer_id)
    sla.start(conversation, task.queue, task.priority, now)


def _waiting_copy(conversation: Conversation, task: Task, now: datetime) -> Conversation:
    """The conversation as `enqueue` leaves it (for event payloads, without reading it back)."""
    return conversation.model_copy(
        update={
            "status": ConversationStatus.WAITING,
            "waiting_since": now,
            "task_queue": task.queue,
            "task_sort_key": task.sort_key,
            "task_shard": task.shard,
            "assigned_agent_id": None,
            "assigned_channel": None,
            "offer_id": None,
            "updated_at": now,
        }
    )


def hand_off(message: HandOff) -> None:
    """Control passed to humans (services/control.py): put the conversation in line, with the
    agent who took it first when one did."""
    conversation = _conversation(message.conversation_id)
    customer = customer_store.get_customer(message.customer_id)
    if customer is None or conversation.control is None or conversation.control.controller.is_bot:
        return  # gone, or a bot took it back meanwhile
    if conversation.status in (ConversationStatus.WAITING, ConversationStatus.ASSIGNED):
        return  # already in line or held (a redelivery)
    channel = (conversation.last_channel or Channel.SMS).value
    taken_by = message.preferred_agent
    preferred = (taken_by, utcnow() + timedelta(seconds=routing_config().sticky_wait_seconds)) if taken_by else None
    outbox = Outbox()
    _queue_and_match(customer, conversation, channel, "", "handoff", outbox, preferred=preferred)
    outbox.flush()


def escalate(message: Escalate) -> None:
    """An SLA escalation: the agent who holds the conversation has not replied; another takes it."""
    conversation = _conversation(message.conversation_id)
    if conversation.status is not ConversationStatus.ASSIGNED or conversation.assigned_agent_id != message.agent_id:
        return  # resolved, transferred or re-queued meanwhile (a redelivery)
    _requeue(
        conversation,
        message.agent_id,
        "escalation",
        event="conversation.transferred",
        excluded=[message.agent_id],
        raise_priority=message.raise_priority,
    )


def _sticky(customer: Customer, now: datetime, config: RoutingConfig) -> tuple[str | None, datetime | None]:
    if not customer.last_agent_id or not customer.last_resolved_at:
        return None, None
    if (now - customer.last_resolved_at).total_seconds() > config.sticky_window_seconds:
        return None, None
    return customer.last_agent_id, now + timedelta(seconds=config.sticky_wait_seconds)


def _new_task(
    customer: Customer,
    conversation_id: str,
    channel: str,
    text: str,
    reason: str,
    now: datetime,
    *,
    preferred: tuple[str | None, datetime | None] = (None, None),
    skills: dict[str, int] | None = None,
    queue_name: str | None = None,
    excluded: list[str] | None = None,
) -> Task:
    config = routing_config()
    classification = classify(channel, customer.attributes, text, config)
    return Task(
        conversation_id=conversation_id,
        customer_id=customer.id,
        channel=channel,
        queue=queue_name or classification.queue,
        priority=classification.priority,
        skills=classification.skills if skills is None else skills,
        enqueued_at=now,
        enqueue_id=new_ulid(),
        shard=routing_store.task_shard(conversation_id),
        preferred_agent=preferred[0],
        preferred_until=preferred[1],
        excluded_agents=excluded or [],
        reason=reason,
    )


def queue_conversation(
    customer: Customer,
    conversation: Conversation,
    channel: str,
    text: str,
    reason: str,
    *,
    preferred: tuple[str | None, datetime | None] | None = None,
    outbox: Outbox,
    task: Task | None = None,
) -> tuple[Task, Conversation] | None:
    """Put the conversation in line (one TransactWriteItems); the task and the conversation as
    now stored, or None when it is already waiting or held (the other path owns it). Its
    re-check timer is the caller's: none is needed when it is offered at once."""
    now = task.enqueued_at if task is not None else utcnow()
    if task is None:
        preferred = preferred or _sticky(customer, now, routing_config())
        task = _new_task(customer, conversation.id, channel, text, reason, now, preferred=preferred)
    try:
        routing_store.enqueue(task, now)
    except Lost:
        return None
    queued = _waiting_copy(conversation, task, now)
    outbox.add("conversation.queued", {**_context(queued, customer), "task": _task_view(task)}, task.sort_key)
    sla.start(conversation, task.queue, task.priority, now)
    return task, queued


def _task_view(task: Task) -> dict[str, Any]:
    return task.model_dump(
        mode="json", include={"queue", "priority", "skills", "channel", "reason", "enqueued_at", "preferred_agent"}
    )


def _schedule_recheck(task: Task, now: datetime) -> None:
    moment = next_recheck(task, now, routing_config())
    if moment is not None:
        timers.schedule(TaskRecheck(queue=task.queue, sort_key=task.sort_key, shard=task.shard), moment)


# --- Matching --------------------------------------------------------------------------------------

INDEX_PAGE = 20  # availability entries read per Query
INDEX_PAGES = 3  # pages read in one shard before it counts as having nobody eligible
AHEAD_PAGE = 20  # tasks ahead of a new one checked for the chosen agent
# Waiting tasks read per queue partition when an agent frees capacity: every partition's head is
# read on each release, so it is kept small (README "How it is built": reads per partition).
AGENT_HEAD_PAGE = 10


@dataclass
class Offered:
    offer: Offer
    agent: Agent  # as stored after the offer


def _offer_data(conversation: Conversation, customer: Customer | None, offer: Offer, agent: Agent) -> dict[str, Any]:
    data = {**_context(conversation, customer), "offer": offer_view(offer), "agent": agent_view(agent)}
    if _handed_over(conversation):
        data["handoff"] = handoff.packet(conversation.id)  # what the bot gathered, and the whole cycle
    return data


def _offer(
    task: Task,
    agent: Agent,
    now: datetime,
    outbox: Outbox,
    *,
    conversation: Conversation | None = None,
    customer: Customer | None = None,
) -> Offered | None:
    """Try to offer `task` to `agent` (as read); None when another worker changed either first.
    `conversation` and `customer`, when in hand, make the offer.created payload without a read."""
    offer_id = new_id("ofr")
    expires_at = now + timedelta(seconds=routing_config().offer_timeout_seconds)
    offer = Offer.of(task, agent.id, offer_id, now, expires_at)
    # The timeout is scheduled first: if the transaction then fails, the timer finds no pending
    # offer and does nothing; the reverse order could leave an offer that never expires.
    timers.schedule(OfferTimeout(offer_id=offer_id), expires_at)
    try:
        stored = routing_store.create_offer(task, offer, agent)
    except Lost:
        return None
    if conversation is None:
        conversation = _conversation(task.conversation_id)
    else:
        conversation = conversation.model_copy(update={"offer_id": offer_id, "updated_at": now})
    outbox.add("offer.created", _offer_data(conversation, customer, offer, stored), offer_id)
    logger.info("offer created", extra={"offer_id": offer_id, "agent_id": agent.id, "queue": task.queue})
    metrics.assignment_latency(task.enqueued_at, now)
    if stored.auto_accept:
        outbox.auto_accept.append(offer_id)
    return Offered(offer, stored)


def _handed_over(conversation: Conversation) -> bool:
    """A bot passed the conversation to humans in this cycle: its offer carries the handoff packet
    (an agent never asks what the bot already asked)."""
    control = conversation.control
    return control is not None and control.controller.kind is ControllerKind.HUMANS and bool(control.metadata)


# Per channel, the index shard where this worker last found a candidate after the task's home
# shard had none: read second, so few available agents spread over many shards cost about one
# Query more, not one per shard. Only an order of reading; any stale value is harmless.
_found_in: dict[str, int] = {}


def _shard_order(home: int, channel: str) -> list[int]:
    shards = settings().routing_shards
    order = [home % shards]
    hint = _found_in.get(channel)
    if hint is not None and hint < shards and hint not in order:
        order.append(hint)
    return order + [shard for step in range(shards) if (shard := (home + step) % shards) not in order]


def _best_agent(task: Task, now: datetime, config: RoutingConfig) -> Agent | None:
    """The best agent for a task by the policy (domain/routing.choose_agent), from the
    availability index: its home shard first (the task's own), then the others, each read from
    the head, best first, a page or a few. A sticky task reads only its preferred agent."""
    preferred = preferred_agent_now(task, now)
    if preferred is not None:
        agent = agent_store.get_agent(preferred)
        return agent if agent is not None and choose_agent(task, [agent], now, config) else None
    for shard in _shard_order(task.shard, task.channel):
        start = None
        for _ in range(INDEX_PAGES):
            page, start = agent_store.available(task.channel, shard, INDEX_PAGE, start)
            ranked = choose_agent(task, page, now, config)
            if ranked:
                if shard != task.shard:
                    _found_in[task.channel] = shard
                return ranked[0]
            if start is None:
                break
    return None


def _waiting_for(agent: Agent, now: datetime, config: RoutingConfig) -> list[Task]:
    """Every queue partition's head, merged in service order, that this agent may take."""
    shards = settings().routing_shards
    heads = [
        task
        for name in config.all_queues()
        for shard in range(shards)
        for task in routing_store.waiting_tasks(name, shard, AGENT_HEAD_PAGE)
    ]
    return choose_tasks(agent, heads, now, config)


def match_task(
    task: Task,
    outbox: Outbox | None = None,
    *,
    conversation: Conversation | None = None,
    customer: Customer | None = None,
) -> Offered | None:
    """Offer a waiting task to the best eligible agent.

    Strict order: if that agent could take a task ahead of this one in its queue partition, that
    task is offered first, so a newcomer never jumps the line into a freshly freed slot. Events
    go to `outbox` (the caller flushes it), or out at the end when there is none."""
    own = outbox is None
    box = outbox if outbox is not None else Outbox()
    try:
        return _match_task(task, box, conversation, customer)
    finally:
        if own:
            box.flush()


def _match_task(
    task: Task, outbox: Outbox, conversation: Conversation | None, customer: Customer | None
) -> Offered | None:
    config = routing_config()
    for _ in range(MATCH_ATTEMPTS):
        now = utcnow()
        agent = _best_agent(task, now, config)
        if agent is None:
            return None
        ahead = choose_tasks(agent, routing_store.waiting_ahead_of(task, AHEAD_PAGE), now, config)
        if ahead:
            _offer(ahead[0], agent, now, outbox)  # the older task first; this one tries again
        else:
            offered = _offer(task, agent, now, outbox, conversation=conversation, customer=customer)
            if offered is not None:
                return offered
        fresh = routing_store.get_task(task.queue, task.sort_key, task.shard)
        if fresh is None or fresh.status is not TaskStatus.WAITING:
            return None
        task = fresh
    # Still contended, or older tasks went first: ask again through the queue rather than spin.
    queue.request_routing(
        MatchTask(queue=task.queue, sort_key=task.sort_key, shard=task.shard).model_dump_json(), task.customer_id
    )
    return None


def match_task_by_key(queue_name: str, sort_key: str, shard: int = 0) -> str | None:
    task = routing_store.get_task(queue_name, sort_key, shard)
    if task is None or task.status is not TaskStatus.WAITING:
        return None
    offered = match_task(task)
    if offered is None:
        _schedule_recheck(task, utcnow())
        return None
    return offered.offer.id


def match_agent(agent_id: str) -> list[str]:
    """Give an agent the best waiting tasks it can take, until it is full or nothing fits: the
    head of every queue partition, merged in service order."""
    config = routing_config()
    offers: list[str] = []
    outbox = Outbox()
    agent = agent_store.get_agent(agent_id)
    misses = 0
    try:
        while agent is not None and agent.status is AgentStatus.AVAILABLE and misses < MATCH_ATTEMPTS:
            now = utcnow()
            candidates = _waiting_for(agent, now, config)[:MATCH_ATTEMPTS]
            if not candidates:
                break
            offered = next(
                (made for task in candidates if (made := _offer(task, agent, now, outbox)) is not None), None
            )
            if offered is None:
                misses += 1
                agent = agent_store.get_agent(agent_id)  # another worker moved it or the tasks: decide again
                continue
            offers.append(offered.offer.id)
            agent = offered.agent
    finally:
        outbox.flush()
    return offers


def request_agent_match(agent_id: str) -> None:
    queue.request_routing(MatchAgent(agent_id=agent_id).model_dump_json(), f"agent:{agent_id}")


def _request_task_match(offer: Offer) -> None:
    queue.request_routing(
        MatchTask(queue=offer.queue, sort_key=offer.task_sort_key, shard=offer.task_shard).model_dump_json(),
        offer.customer_id,
    )


# --- Offers ------------------------------------------------------------------------------------------


def _offer_or_404(offer_id: str) -> Offer:
    offer = routing_store.get_offer(offer_id)
    if offer is None:
        raise NotFound(f"no offer '{offer_id}'")
    return offer


def get_offer(offer_id: str) -> dict[str, Any]:
    return offer_view(_offer_or_404(offer_id))


def _with_agent(agent_id: str, write: Callable[[Agent], T]) -> T:
    """Run a write that needs the agent as read, reading it again while other workers move it."""
    for _ in range(AGENT_ATTEMPTS):
        agent = agent_store.get_agent(agent_id)
        if agent is None:
            raise Lost(f"agent '{agent_id}' is gone")
        try:
            return write(agent)
        except Lost as lost:
            if not lost.agent_moved:
                raise
    raise Lost(f"agent '{agent_id}' kept changing", agent_moved=True)


def accept_offer(offer_id: str) -> dict[str, Any]:
    offer = _offer_or_404(offer_id)
    agent: Agent | None = None
    if offer.pending:
        try:
            agent = _with_agent(offer.agent_id, lambda held: routing_store.accept_offer(offer, utcnow(), held))
        except Lost:
            offer = _offer_or_404(offer_id)
            if offer.pending:
                if offer.due(utcnow()):
                    raise Conflict(f"offer '{offer_id}' expired at {offer.expires_at.isoformat()}") from None
                raise Conflict(f"offer '{offer_id}' is being changed; try again") from None
    if offer.status not in (OfferStatus.PENDING, OfferStatus.ACCEPTED):
        raise Conflict(f"offer '{offer_id}' is {offer.status}; it can no longer be accepted")
    newly = offer.pending
    offer = _offer_or_404(offer_id)
    conversation = _conversation(offer.conversation_id)
    if newly:
        sla.assigned(conversation, offer.agent_id, offer.decided_at or utcnow())
    agent = agent or agent_store.get_agent(offer.agent_id)
    data = {**_context(conversation), "offer": offer_view(offer), "agent": agent_view(agent) if agent else None}
    if _handed_over(conversation):
        data["handoff"] = handoff.packet(conversation.id)
    # Re-emitted with the same ids on a retry, so a CRM sees each event once.
    _emit([("offer.accepted", data, offer_id), ("conversation.assigned", data, offer_id)])
    return offer_view(offer)


def _release(offer_id: str, outcome: OfferStatus, *, exclude_agent: bool) -> Offer | None:
    offer = _offer_or_404(offer_id)
    if not offer.pending:
        return None
    try:
        _with_agent(
            offer.agent_id, lambda held: routing_store.release_offer(offer, outcome, utcnow(), exclude_agent, held)
        )
    except Lost:
        return None
    offer = _offer_or_404(offer_id)
    conversation = _conversation(offer.conversation_id)
    _emit([(f"offer.{outcome.value}", {**_context(conversation), "offer": offer_view(offer)}, offer_id)])
    _request_task_match(offer)
    request_agent_match(offer.agent_id)
    return offer


def reject_offer(offer_id: str) -> dict[str, Any]:
    offer = _release(offer_id, OfferStatus.REJECTED, exclude_agent=True)
    if offer is None:
        current = _offer_or_404(offer_id)
        if current.status is not OfferStatus.REJECTED:
            raise Conflict(f"offer '{offer_id}' is {current.status}; it can no longer be rejected")
        offer = current
    return offer_view(offer)


def expire_offer(offer_id: str) -> None:
    offer = routing_store.get_offer(offer_id)
    if offer is None or not offer.pending:
        return  # accepted, rejected, or never created (its transaction lost)
    if not offer.due(utcnow()):
        timers.schedule(OfferTimeout(offer_id=offer_id), offer.expires_at)
        return
    if _release(offer_id, OfferStatus.EXPIRED, exclude_agent=True) is not None:
        metrics.offer_expired()


# --- Agents -------------------------------------------------------------------------------------------


def set_agent_status(agent_id: str, status: AgentStatus) -> Agent:
    try:
        agent = agent_store.set_status(agent_id, status, utcnow())
    except agent_store.RosterChanged as exc:
        raise Conflict(str(exc)) from None
    if agent is None:
        raise NotFound(f"no agent '{agent_id}'")
    if status is AgentStatus.AVAILABLE:
        request_agent_match(agent_id)
    elif status is AgentStatus.OFFLINE:
        for offer_id in agent.offer_ids:
            _release(offer_id, OfferStatus.RESCINDED, exclude_agent=False)
        if agent.conversation_ids:
            grace = routing_config().agent_grace_seconds
            timers.schedule_in(AgentGrace(agent_id=agent_id, offline_since=agent.status_changed_at), grace)
    logger.info("agent status", extra={"agent_id": agent_id, "status": status.value})
    return agent_store.get_agent(agent_id) or agent


def agent_grace_over(message: AgentGrace) -> None:
    """Still offline after the grace period: re-queue what the agent holds, marked to return to it."""
    agent = agent_store.get_agent(message.agent_id)
    if agent is None or agent.status is not AgentStatus.OFFLINE or agent.status_changed_at != message.offline_since:
        return
    config = routing_config()
    for conversation_id in agent.conversation_ids:
        conversation = thread.get_conversation(conversation_id)
        if conversation is None or conversation.assigned_agent_id != agent.id:
            continue
        until = utcnow() + timedelta(seconds=config.sticky_wait_seconds)
        _requeue(conversation, agent.id, "agent_offline", preferred=(agent.id, until), event="conversation.queued")


def _requeue(
    conversation: Conversation,
    agent_id: str,
    reason: str,
    *,
    event: str,
    preferred: tuple[str | None, datetime | None] = (None, None),
    skills: dict[str, int] | None = None,
    queue_name: str | None = None,
    excluded: list[str] | None = None,
    raise_priority: int = 0,
) -> Task:
    customer = customer_store.get_customer(conversation.customer_id)
    if customer is None:
        raise NotFound(f"no customer '{conversation.customer_id}'")
    now = utcnow()
    channel = conversation.assigned_channel or (conversation.last_channel or "sms")
    task = _new_task(
        customer,
        conversation.id,
        str(channel),
        "",
        reason,
        now,
        preferred=preferred,
        skills=skills,
        queue_name=queue_name,
        excluded=excluded,
    )
    if raise_priority:
        task = task.model_copy(update={"priority": min(9, task.priority + raise_priority)})
    try:
        _with_agent(
            agent_id,
            lambda held: routing_store.release_conversation(
                conversation.id, held, str(channel), now, resolve=False, customer_id=customer.id, requeue=task
            ),
        )
    except Lost:
        raise Conflict(f"conversation '{conversation.id}' changed meanwhile; read it again") from None
    after = _conversation(conversation.id)
    outbox = Outbox(
        events=[
            (event, {**_context(after, customer), "task": _task_view(task), "from_agent_id": agent_id}, task.sort_key)
        ]
    )
    if match_task(task, outbox) is None:
        _schedule_recheck(task, now)
    outbox.flush()
    request_agent_match(agent_id)
    return task


# --- Resolve and transfer ----------------------------------------------------------------------------


def resolve(conversation_id: str) -> Conversation:
    conversation = _conversation(conversation_id)
    now = utcnow()
    if conversation.status is ConversationStatus.RESOLVED:
        return conversation
    if conversation.status is ConversationStatus.ASSIGNED and conversation.assigned_agent_id:
        try:
            _with_agent(
                conversation.assigned_agent_id,
                lambda held: routing_store.release_conversation(
                    conversation.id,
                    held,
                    str(conversation.assigned_channel),
                    now,
                    resolve=True,
                    customer_id=conversation.customer_id,
                ),
            )
        except Lost:
            raise Conflict(f"conversation '{conversation_id}' changed meanwhile; read it again") from None
        request_agent_match(conversation.assigned_agent_id)
    elif conversation.status is ConversationStatus.WAITING and conversation.task_sort_key:
        if conversation.offer_id:
            _release(conversation.offer_id, OfferStatus.RESCINDED, exclude_agent=False)
        try:
            routing_store.resolve_waiting(
                conversation.id, str(conversation.task_queue), conversation.task_sort_key, conversation.task_shard, now
            )
        except Lost:
            raise Conflict(f"conversation '{conversation_id}' changed meanwhile; read it again") from None
    elif not thread.resolve_unrouted(conversation.id, now.isoformat()):
        raise Conflict(f"conversation '{conversation_id}' changed meanwhile; read it again")
    resolved = _conversation(conversation_id)
    sla.resolved(resolved, now)
    _emit(
        [
            (
                "conversation.resolved",
                {**_context(resolved), "agent_id": conversation.assigned_agent_id},
                f"{conversation_id}:{now.isoformat()}",
            )
        ]
    )
    surveys.schedule(conversation_id)
    return resolved


def transfer(
    conversation_id: str, to_agent_id: str | None, skills: dict[str, int] | None, queue_name: str | None
) -> dict[str, Any]:
    conversation = _conversation(conversation_id)
    if conversation.status is not ConversationStatus.ASSIGNED or not conversation.assigned_agent_id:
        raise Conflict(
            f"conversation '{conversation_id}' is {conversation.status}; only an assigned one is transferred"
        )
    if to_agent_id is not None and agent_store.get_agent(to_agent_id) is None:
        raise NotFound(f"no agent '{to_agent_id}'")
    if queue_name is not None and queue_name not in routing_config().all_queues():
        raise NotFound(f"no queue '{queue_name}' (known: {', '.join(routing_config().all_queues())})")
    preferred: tuple[str | None, datetime | None] = (None, None)
    if to_agent_id:
        wait = max(routing_config().sticky_wait_seconds, routing_config().offer_timeout_seconds)
        preferred = (to_agent_id, utcnow() + timedelta(seconds=wait))
    task = _requeue(
        conversation,
        conversation.assigned_agent_id,
        "transfer",
        event="conversation.transferred",
        preferred=preferred,
        skills=skills,
        queue_name=queue_name,
        excluded=[conversation.assigned_agent_id] if to_agent_id != conversation.assigned_agent_id else [],
    )
    return {"conversation": conversation_view(_conversation(conversation_id)), "task": _task_view(task)}


# --- Queues -----------------------------------------------------------------------------------------------


def queue_stats() -> list[dict[str, Any]]:
    """Per queue: tasks waiting, by priority, and the oldest wait (every waiting task of the queue
    is read: an operator's view, not a request path of routing); offers pending and the agents
    from the live counts (store/analytics gauges and roster; the agents over all channels, the
    same for every queue)."""
    config = routing_config()
    now = utcnow()
    roster = agent_store.roster(Reads()).get(ALL_CHANNELS, {})
    agents = {state: int(roster.get(state, 0)) for state in agent_store.ROSTER_STATES}
    # Offered tasks are held in their offers, not in the queue: the live gauges count them.
    offered: dict[str, int] = {}
    for gauge in analytics_store.gauges(Reads()):
        name = str(gauge.get("queue", ""))
        offered[name] = offered.get(name, 0) + int(gauge.get("offered", 0))
    stats = []
    for name in config.all_queues():
        tasks = routing_store.all_tasks(name)
        by_priority: dict[str, int] = {}
        for task in tasks:
            by_priority[str(task.priority)] = by_priority.get(str(task.priority), 0) + 1
        oldest = min((task.enqueued_at for task in tasks), default=None)
        stats.append(
            {
                "queue": name,
                "waiting": sum(1 for task in tasks if task.status is TaskStatus.WAITING),
                "offered": max(0, offered.get(name, 0)),
                "waiting_by_priority": by_priority,
                "oldest_wait_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
                "agents": agents,
            }
        )
    return stats
