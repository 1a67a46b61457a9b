"""Routing: conversations wait in line as tasks and are offered to agents, one offer at a time.

Matching is event driven: a new task is matched at once; an agent becoming available or
freeing capacity (resolve, reject, expiry, transfer) asks for the best waiting task it can take;
timers re-match a task when its sticky wait ends or its skills relax. The pure policy lives in
domain/routing.py; every state change is one conditional transaction in store/routing.py, so
concurrent workers can only lose a race, never break an invariant. A loser re-reads and moves on.

AWS requests for one assignment of a new inbound conversation (the routing worker, after ingest),
one operation name per request, as measured by bench/routing.py:
  reads      GetItem conversation, GetItem customer, GetItem message
  CRM        SendMessageBatch customer.created / message.created
  analytics  GetItem cycle, TransactWriteItems cycle + counts + gauges (services/analytics.py)
  enqueue    TransactWriteItems conversation + task
  CRM        SendMessageBatch conversation.queued
  analytics  GetItem cycle, TransactWriteItems cycle + counts + gauges
  timer      SendMessage the task's next re-check (sticky end or skill relaxation)
  match      Query agents (one partition), Query the head of each queue (one per queue; here one)
  offer      SendMessage the offer's timeout, then TransactWriteItems task + agent + offer + conversation
  CRM        GetItem conversation, GetItem customer (the offer.created payload), SendMessageBatch offer.created
  analytics  GetItem cycle, TransactWriteItems cycle + counts + gauges
  = 20 requests with one queue, none of them a Scan.
Left to do (issue 13): one CRM batch and one analytics fold instead of three, and the offer
payload from what is already in hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chalicelib import metrics, queue
from chalicelib.api.models import agent_view, conversation_view, customer_view, message_view, offer_view
from chalicelib.domain.agents import Agent, AgentStatus
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
from chalicelib.services.errors import Conflict, NotFound
from chalicelib.services.routing_config import routing_config
from chalicelib.store import agents as agent_store
from chalicelib.store import customers as customer_store
from chalicelib.store import routing as routing_store
from chalicelib.store import thread
from chalicelib.store.routing import Lost

MATCH_ATTEMPTS = 3


# --- CRM events ---------------------------------------------------------------------------------


def _emit(events: list[tuple[str, dict[str, Any], str]]) -> None:
    from chalicelib.services import events as crm_events

    crm_events.emit_many(events)


def _context(conversation: Conversation) -> dict[str, Any]:
    customer = customer_store.get_customer(conversation.customer_id)
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


def handle_inbound(task: RoutingTask) -> None:
    """A stored inbound message: tell the CRM, and queue the conversation unless an agent holds it."""
    conversation = _conversation(task.conversation_id)
    customer = customer_store.get_customer(task.customer_id)
    message = thread.get_message(task.conversation_id, task.message_id)
    if customer is None or message is None:
        raise NotFound(f"inbound message {task.message_id} is not stored yet")
    queue_name = (
        conversation.task_queue or classify(task.channel.value, customer.attributes, task.text, routing_config()).queue
    )
    context = {"customer": customer_view(customer), "conversation": conversation_view(conversation)}
    events: list[tuple[str, dict[str, Any], str]] = []
    if task.new_customer:
        events.append(("customer.created", context, customer.id))
    answer = surveys.answer_to(conversation, message)
    # The queue the message is classified into: a new cycle is counted in it (analytics); a
    # survey's rating or comment opens no cycle.
    created = {**context, "message": message_view(message), "queue": queue_name}
    if answer is not None:
        created["survey_answer"] = True
    events.append(("message.created", created, message.id))
    _emit(events)
    if answer is not None:
        surveys.record(conversation, customer, message, answer)
        return  # a survey's answer: recorded and thanked for, never routed
    if consent.handle_keyword(customer, conversation, message):
        return  # STOP/START/HELP (or an email unsubscribe): answered and recorded, never routed
    if conversation.status in (ConversationStatus.OPEN, ConversationStatus.RESOLVED):
        # A new cycle: its queue's first controller takes it (humans, the assistant or a bot).
        conversation = control.begin_cycle(conversation, queue_name, task.channel.value, utcnow())
    if conversation.control is not None and conversation.control.controller.is_bot:
        bots.deliver(conversation.control.controller, customer, conversation, message)
        return  # while a bot is in control no routing task exists
    if conversation.control is not None and conversation.control.controller.kind is ControllerKind.NOBODY:
        return
    auto_replies.after_inbound(customer, conversation, message, queue_name, utcnow())
    if conversation.status in (ConversationStatus.OPEN, ConversationStatus.RESOLVED) or (
        conversation.status is ConversationStatus.WAITING and not conversation.task_sort_key
    ):
        queued = queue_conversation(customer, conversation, task.channel.value, task.text, "inbound")
        if queued is not None:
            match_task(queued)
    elif conversation.status is ConversationStatus.WAITING and conversation.task_queue and not conversation.offer_id:
        # Already in line (a redelivery after a crash, or a follow-up message): make sure it is matched.
        sla.customer_wrote(conversation, message.created_at)
        match_task_by_key(conversation.task_queue, str(conversation.task_sort_key))
    else:
        sla.customer_wrote(conversation, message.created_at)  # held by an agent, or offered


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
    queued = queue_conversation(customer, conversation, channel, "", "handoff", preferred=preferred)
    if queued is not None:
        match_task(queued)


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
) -> Task | None:
    now = utcnow()
    task = _new_task(
        customer,
        conversation.id,
        channel,
        text,
        reason,
        now,
        preferred=preferred or _sticky(customer, now, routing_config()),
    )
    try:
        routing_store.enqueue(task, now)
    except Lost:
        return None  # already waiting or held: the other path owns it
    queued = conversation.model_copy(
        update={"status": ConversationStatus.WAITING, "waiting_since": now, "task_queue": task.queue}
    )
    context = {"conversation": conversation_view(queued), "customer": customer_view(customer)}
    _emit([("conversation.queued", {**context, "task": _task_view(task)}, task.sort_key)])
    _schedule_recheck(task, now)
    sla.start(conversation, task.queue, task.priority, now)
    return task


def _task_view(task: Task) -> dict[str, Any]:
    return task.model_dump(
        mode="json", include={"queue", "priority", "skills", "channel", "reason", "enqueued_at", "preferred_agent"}
    )


def _schedule_recheck(task: Task, now: datetime) -> None:
    moment = next_recheck(task, now, routing_config())
    if moment is not None:
        timers.schedule(TaskRecheck(queue=task.queue, sort_key=task.sort_key), moment)


# --- Matching --------------------------------------------------------------------------------------


def _offer(task: Task, agent: Agent, now: datetime) -> Offer | None:
    """Try to offer `task` to `agent`; None when another worker changed either first."""
    offer_id = new_id("ofr")
    expires_at = now + timedelta(seconds=routing_config().offer_timeout_seconds)
    offer = Offer.of(task, agent.id, offer_id, now, expires_at)
    # The timeout is scheduled first: if the transaction then fails, the timer finds no pending
    # offer and does nothing; the reverse order could leave an offer that never expires.
    timers.schedule(OfferTimeout(offer_id=offer_id), expires_at)
    try:
        routing_store.create_offer(task, offer)
    except Lost:
        return None
    conversation = _conversation(task.conversation_id)
    data = {**_context(conversation), "offer": offer_view(offer), "agent": agent_view(agent)}
    if _handed_over(conversation):
        data["handoff"] = handoff.packet(conversation.id)  # what the bot gathered, and the whole cycle
    _emit([("offer.created", data, offer_id)])
    logger.info("offer created", extra={"offer_id": offer_id, "agent_id": agent.id, "queue": task.queue})
    metrics.assignment_latency(task.enqueued_at, now)
    if agent.auto_accept:
        accept_offer(offer_id)
    return offer


def _handed_over(conversation: Conversation) -> bool:
    """A bot passed the conversation to humans in this cycle: its offer carries the handoff packet
    (an agent never asks what the bot already asked)."""
    control = conversation.control
    return control is not None and control.controller.kind is ControllerKind.HUMANS and bool(control.metadata)


def _best_waiting_for(agent: Agent, now: datetime, config: RoutingConfig) -> Task | None:
    waiting = [task for name in config.all_queues() for task in routing_store.waiting_tasks(name, 50)]
    chosen = choose_tasks(agent, waiting, now, config)
    return chosen[0] if chosen else None


def match_task(task: Task) -> str | None:
    """Offer a waiting task to the best eligible agent; returns the offer id.

    Strict order: if that agent could take a task that has waited longer (or matters more), that
    task is offered first, so a newcomer never jumps the line into a freshly freed slot."""
    config = routing_config()
    for _ in range(MATCH_ATTEMPTS):
        now = utcnow()
        ranked = choose_agent(task, agent_store.list_agents(), now, config)
        if not ranked:
            return None
        agent = ranked[0]
        head = _best_waiting_for(agent, now, config)
        candidate = head if head is not None and head.sort_key < task.sort_key else task
        offer = _offer(candidate, agent, now)
        if offer is not None and candidate is task:
            return offer.id
        fresh = routing_store.get_task(task.queue, task.sort_key)
        if fresh is None or fresh.status is not TaskStatus.WAITING:
            return None
        task = fresh
    # Still contended, or older tasks went first: ask again through the queue rather than spin.
    queue.request_routing(MatchTask(queue=task.queue, sort_key=task.sort_key).model_dump_json(), task.customer_id)
    return None


def match_task_by_key(queue_name: str, sort_key: str) -> str | None:
    task = routing_store.get_task(queue_name, sort_key)
    if task is None or task.status is not TaskStatus.WAITING:
        return None
    offer_id = match_task(task)
    if offer_id is None:
        _schedule_recheck(task, utcnow())
    return offer_id


def match_agent(agent_id: str) -> list[str]:
    """Give an agent the best waiting tasks it can take, until it is full or nothing fits."""
    config = routing_config()
    offers: list[str] = []
    while True:
        agent = agent_store.get_agent(agent_id)
        if agent is None or agent.status is not AgentStatus.AVAILABLE:
            return offers
        now = utcnow()
        waiting = [task for name in config.all_queues() for task in routing_store.waiting_tasks(name, 50)]
        candidates = choose_tasks(agent, waiting, now, config)[:MATCH_ATTEMPTS]
        offered = next((offer for task in candidates if (offer := _offer(task, agent, now)) is not None), None)
        if offered is None:
            return offers
        offers.append(offered.id)


def request_agent_match(agent_id: str) -> None:
    queue.request_routing(MatchAgent(agent_id=agent_id).model_dump_json(), f"agent:{agent_id}")


def _request_task_match(offer: Offer) -> None:
    queue.request_routing(
        MatchTask(queue=offer.queue, sort_key=offer.task_sort_key).model_dump_json(), offer.customer_id
    )


# --- Offers ------------------------------------------------------------------------------------------


def _offer_or_404(offer_id: str) -> Offer:
    offer = routing_store.get_offer(offer_id)
    if offer is None:
        raise NotFound(f"no offer '{offer_id}'")
    return offer


def get_offer(offer_id: str) -> dict[str, Any]:
    return offer_view(_offer_or_404(offer_id))


def accept_offer(offer_id: str) -> dict[str, Any]:
    offer = _offer_or_404(offer_id)
    if offer.pending:
        try:
            routing_store.accept_offer(offer, utcnow())
        except Lost:
            offer = _offer_or_404(offer_id)
            if offer.pending:
                raise Conflict(f"offer '{offer_id}' expired at {offer.expires_at.isoformat()}") from None
    if offer.status not in (OfferStatus.PENDING, OfferStatus.ACCEPTED):
        raise Conflict(f"offer '{offer_id}' is {offer.status}; it can no longer be accepted")
    newly = offer.pending
    offer = _offer_or_404(offer_id)
    conversation = _conversation(offer.conversation_id)
    if newly:
        sla.assigned(conversation, offer.agent_id, offer.decided_at or utcnow())
    agent = agent_store.get_agent(offer.agent_id)
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
        routing_store.release_offer(offer, outcome, utcnow(), exclude_agent)
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
        routing_store.release_conversation(
            conversation.id, agent_id, str(channel), now, resolve=False, customer_id=customer.id, requeue=task
        )
    except Lost:
        raise Conflict(f"conversation '{conversation.id}' changed meanwhile; read it again") from None
    after = _conversation(conversation.id)
    _emit([(event, {**_context(after), "task": _task_view(task), "from_agent_id": agent_id}, task.sort_key)])
    _schedule_recheck(task, now)
    match_task(task)
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
            routing_store.release_conversation(
                conversation.id,
                conversation.assigned_agent_id,
                str(conversation.assigned_channel),
                now,
                resolve=True,
                customer_id=conversation.customer_id,
            )
        except Lost:
            raise Conflict(f"conversation '{conversation_id}' changed meanwhile; read it again") from None
        request_agent_match(conversation.assigned_agent_id)
    elif conversation.status is ConversationStatus.WAITING and conversation.task_sort_key:
        if conversation.offer_id:
            _release(conversation.offer_id, OfferStatus.RESCINDED, exclude_agent=False)
        try:
            routing_store.resolve_waiting(
                conversation.id, str(conversation.task_queue), conversation.task_sort_key, now
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
    config = routing_config()
    now = utcnow()
    agents = agent_store.list_agents()
    stats = []
    for name in config.all_queues():
        tasks = routing_store.all_tasks(name)
        skills = next((rule.skills for rule in config.rules if rule.queue == name), {})
        qualified = [agent for agent in agents if agent.has_skills(skills)]
        by_priority: dict[str, int] = {}
        for task in tasks:
            by_priority[str(task.priority)] = by_priority.get(str(task.priority), 0) + 1
        oldest = min((task.enqueued_at for task in tasks), default=None)
        stats.append(
            {
                "queue": name,
                "waiting": sum(1 for task in tasks if task.status is TaskStatus.WAITING),
                "offered": sum(1 for task in tasks if task.status is TaskStatus.OFFERED),
                "waiting_by_priority": by_priority,
                "oldest_wait_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
                "agents": {
                    "available": sum(
                        1
                        for a in qualified
                        if a.status is AgentStatus.AVAILABLE and any(a.spare(c) for c in a.capacity)
                    ),
                    "busy": sum(
                        1
                        for a in qualified
                        if a.status is AgentStatus.AWAY
                        or (a.status is AgentStatus.AVAILABLE and not any(a.spare(c) for c in a.capacity))
                    ),
                    "offline": sum(1 for a in qualified if a.status is AgentStatus.OFFLINE),
                },
            }
        )
    return stats
