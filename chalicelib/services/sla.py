"""Service-level clocks through a conversation's life, on the timer queue (no scheduler, no scans).

- A cycle queued for humans gets its policy's first-response and resolution clocks (`start`).
- An agent's reply meets the first-response and next-response clocks (`agent_replied`); bots'
  and automatic messages never do.
- A customer message after an agent answered starts a next-response clock (`customer_wrote`).
- A resolution meets the resolution clock and stops the others (`resolved`).
- Each clock has two timers, at its warning and at its target: `sla.warning` and `sla.breached`
  go to the CRM (fixed event ids: a redelivered timer is the same event), and a breach marks it
  missed. A policy may escalate an accepted conversation whose agent has not replied for N
  seconds: re-queued to another agent (through the routing queue) or `conversation.escalated`.

Every change is one UpdateItem conditional on the clocks' version; a conversation without a
policy costs nothing. AWS requests to start a cycle's clocks: UpdateItem, and two SQS SendMessage
per clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib import queue
from chalicelib.api.models import conversation_view
from chalicelib.domain.customers import Conversation
from chalicelib.domain.messages import utcnow
from chalicelib.domain.routing_task import Escalate
from chalicelib.domain.sla import SlaPolicy, choose_policy, clock, ended
from chalicelib.domain.sla_clocks import ClockStatus, SlaClock, SlaState, SlaTarget
from chalicelib.domain.timers import NoAgentReply, SlaDue
from chalicelib.observability import logger
from chalicelib.services import auto_replies, events, timers
from chalicelib.services.routing_config import routing_config
from chalicelib.store import conversation_state, thread

ATTEMPTS = 4


def _policy(conversation: Conversation, queue_name: str | None = None, priority: int = 0) -> SlaPolicy | None:
    policies = routing_config().sla
    if not policies:
        return None
    chosen_queue = queue_name or conversation.task_queue or routing_config().default_queue
    if conversation.sla is not None and conversation.sla.clocks:
        named = next(iter(conversation.sla.clocks.values())).policy
        return next((policy for policy in policies if policy.name == named), None)
    return choose_policy(policies, chosen_queue, priority)


def start(conversation: Conversation, queue_name: str, priority: int, now: datetime | None = None) -> None:
    """A cycle queued for humans: its first-response and resolution clocks, once per cycle."""
    policies = routing_config().sla
    if not policies:
        return
    now = now or utcnow()
    cycle = (conversation.resolved_at or conversation.created_at).isoformat()
    if conversation.sla is not None and conversation.sla.cycle == cycle:
        return  # started already (a redelivery, or a transfer within the cycle)
    policy = choose_policy(policies, queue_name, priority)
    if policy is None:
        return
    schedule = auto_replies.schedule_for(queue_name)
    clocks = {
        made.target.value: made
        for target in (SlaTarget.FIRST_RESPONSE, SlaTarget.RESOLUTION)
        if (made := clock(target, policy, now, schedule)) is not None
    }
    state = SlaState(cycle=cycle, clocks=clocks, version=(conversation.sla.version + 1) if conversation.sla else 1)
    try:
        conversation_state.set_state(
            conversation.id, "sla", _stored(state), conversation.sla.version if conversation.sla else 0
        )
    except conversation_state.StateChanged:
        return  # another worker started them
    for made in clocks.values():
        _schedule(conversation.id, made)


def agent_replied(conversation: Conversation, at: datetime) -> None:
    """An agent's reply (as the conversation stood before it): meets the response clocks. Costs
    nothing for a conversation without clocks."""
    if conversation.sla is None:
        return

    def change(state: SlaState) -> SlaState | None:
        clocks = dict(state.clocks)
        for target in (SlaTarget.FIRST_RESPONSE, SlaTarget.NEXT_RESPONSE):
            current = clocks.get(target.value)
            if current is not None and current.status is ClockStatus.ACTIVE:
                clocks[target.value] = ended(current, at)
        return state.model_copy(update={"clocks": clocks, "responded": True, "last_agent_reply_at": at})

    _update(conversation.id, change)


def customer_wrote(conversation: Conversation, at: datetime) -> None:
    """A customer message after an agent answered starts a next-response clock (if none runs)."""
    state = conversation.sla
    if state is None or not state.responded:
        return
    running = state.clocks.get(SlaTarget.NEXT_RESPONSE.value)
    if running is not None and running.status is ClockStatus.ACTIVE:
        return
    policy = _policy(conversation)
    if policy is None:
        return
    made = clock(SlaTarget.NEXT_RESPONSE, policy, at, auto_replies.schedule_for(conversation.task_queue or ""))
    if made is None:
        return
    if _update(
        conversation.id,
        lambda current: current.model_copy(update={"clocks": {**current.clocks, made.target.value: made}}),
    ):
        _schedule(conversation.id, made)


def resolved(conversation: Conversation, at: datetime) -> None:
    """A resolution meets the resolution clock and stops the others; nothing without clocks."""
    if conversation.sla is None:
        return

    def change(state: SlaState) -> SlaState | None:
        clocks = {}
        for name, current in state.clocks.items():
            if current.status is not ClockStatus.ACTIVE:
                clocks[name] = current
            elif current.target is SlaTarget.RESOLUTION:
                clocks[name] = ended(current, at)
            else:
                clocks[name] = current.model_copy(update={"status": ClockStatus.STOPPED, "ended_at": at})
        return state.model_copy(update={"clocks": clocks})

    _update(conversation.id, change)


def assigned(conversation: Conversation, agent_id: str, at: datetime) -> None:
    """An accepted offer: if the policy escalates silence, a timer checks the agent answered."""
    policy = _policy(conversation)
    if policy is None or policy.escalate_after_seconds is None:
        return
    timers.schedule_in(
        NoAgentReply(conversation_id=conversation.id, agent_id=agent_id, accepted_at=at), policy.escalate_after_seconds
    )


def handle_due(message: SlaDue) -> None:
    """A clock's warning or target time came: tell the CRM, and mark a missed target."""
    conversation = thread.get_conversation(message.conversation_id)
    if conversation is None or conversation.sla is None:
        return
    current = conversation.sla.clocks.get(message.target.value)
    if current is None or current.status is not ClockStatus.ACTIVE or current.due_at != message.due_at:
        return  # met, stopped, or moved since this timer was set
    if message.stage == "warning":
        _announce("sla.warning", conversation, current)
        return
    missed = current.model_copy(update={"status": ClockStatus.MISSED, "ended_at": current.due_at})

    def change(state: SlaState) -> SlaState | None:
        now_current = state.clocks.get(message.target.value)
        if now_current is None or now_current.status is not ClockStatus.ACTIVE:
            return None
        return state.model_copy(update={"clocks": {**state.clocks, message.target.value: missed}})

    changed = _update(conversation.id, change)
    if changed is not None:
        _announce("sla.breached", changed, missed)


def handle_no_reply(message: NoAgentReply) -> None:
    """The policy's silence ran out: if the agent still holds it without replying, escalate."""
    conversation = thread.get_conversation(message.conversation_id)
    if conversation is None or conversation.assigned_agent_id != message.agent_id:
        return  # resolved, transferred or re-queued meanwhile
    state = conversation.sla
    if state is not None and state.last_agent_reply_at is not None and state.last_agent_reply_at >= message.accepted_at:
        return
    policy = _policy(conversation)
    if policy is None:
        return
    data = {
        "conversation": conversation_view(conversation),
        "agent_id": message.agent_id,
        "silent_for_seconds": policy.escalate_after_seconds,
        "action": policy.escalation,
    }
    events.emit_many([("conversation.escalated", data, f"{conversation.id}:{message.accepted_at.isoformat()}")])
    if policy.escalation in ("requeue", "raise_priority"):
        step = policy.priority_step if policy.escalation == "raise_priority" else 0
        queue.request_routing(
            Escalate(conversation_id=conversation.id, agent_id=message.agent_id, raise_priority=step).model_dump_json(),
            conversation.customer_id,
        )
    logger.info("conversation escalated", extra={"conversation_id": conversation.id, "action": policy.escalation})


def _stored(state: SlaState) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_none=True)


def _schedule(conversation_id: str, made: SlaClock) -> None:
    for stage, at in (("warning", made.warn_at), ("breach", made.due_at)):
        timers.schedule(
            SlaDue(conversation_id=conversation_id, target=made.target, stage=stage, due_at=made.due_at), at
        )


def _update(conversation_id: str, change: Any) -> Conversation | None:
    """Apply `change` to the stored clocks with a conditional write, reading again on a race."""
    for _ in range(ATTEMPTS):
        conversation = thread.get_conversation(conversation_id)
        if conversation is None or conversation.sla is None:
            return None
        after = change(conversation.sla)
        if after is None:
            return None
        after = after.model_copy(update={"version": conversation.sla.version + 1})
        try:
            return conversation_state.set_state(conversation_id, "sla", _stored(after), conversation.sla.version)
        except conversation_state.StateChanged:
            continue
    logger.warning("sla clocks not updated: too many concurrent changes", extra={"conversation_id": conversation_id})
    return None


def _announce(event_type: str, conversation: Conversation, current: SlaClock) -> None:
    data = {
        "conversation": conversation_view(conversation),
        "target": current.target.value,
        "policy": current.policy,
        "due_at": current.due_at.isoformat(),
        "warn_at": current.warn_at.isoformat(),
        "status": current.status.value,
    }
    key = f"{conversation.id}:{current.target.value}:{current.due_at.isoformat()}"
    events.emit_many([(event_type, data, key)])
