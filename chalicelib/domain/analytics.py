"""Analytics as a fold over the hub's events: pure, no I/O.

A conversation **cycle** runs from its first customer message (after the conversation began or
after a resolution) to the next resolution; a customer message after a resolution starts a new
cycle with its own id. `fold(state, event)` takes the current cycle of a conversation and one
event and answers the next state, the counts to add (`Increment`s, each filed under the hour the
cycle started) and the moves of the live gauges (waiting, offered, assigned, open per queue and
channel). What each metric means is in domain/metric_definitions.py and docs/metrics.md.

Exactly once: the state remembers the ids of the events it has folded (the latest
`SEEN_EVENTS`), and the store writes it conditionally on its version together with the counts,
so a retried event, or two workers folding one conversation at once, never counts twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from chalicelib.domain import histogram
from chalicelib.domain.events import CrmEvent

SEEN_EVENTS = 100
NO_QUEUE = "-"

# Event types the fold reads; the others cost nothing (no read, no write).
FOLDED_EVENTS = frozenset(
    {
        "message.created",
        "conversation.queued",
        "conversation.transferred",
        "offer.created",
        "offer.accepted",
        "offer.rejected",
        "offer.expired",
        "offer.rescinded",
        "conversation.resolved",
        "conversation.channel_linked",
        "conversation.control_changed",
        "sla.warning",
        "sla.breached",
        "csat.requested",
        "csat.submitted",
    }
)
# Events about a survey's cycle, which may no longer be the conversation's current one.
SURVEY_EVENTS = frozenset({"csat.requested", "csat.submitted"})


class Phase(StrEnum):
    OPEN = "open"  # in a cycle, not in line (a bot or nobody holds it, or not routed yet)
    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


GAUGES = ("open", "waiting", "offered", "assigned", "at_risk")


class Csat(BaseModel):
    survey_id: str
    sent_at: datetime
    channel: str
    agent_ids: list[str] = Field(default_factory=list)
    rating: int | None = None
    comment: str | None = None
    answered_at: datetime | None = None


class CycleState(BaseModel):
    """One cycle of one conversation, as analytics sees it (also the drill-down row)."""

    cycle_id: str
    conversation_id: str
    customer_id: str
    started_at: datetime
    channel: str  # the channel of the cycle's first customer message
    queue: str = NO_QUEUE  # the queue it was classified into (or first queued in)
    last_channel: str
    phase: Phase = Phase.OPEN
    line_queue: str | None = None  # the queue it waits in now (a transfer may change it)
    line_since: datetime | None = None
    at_risk: bool = False  # an SLA warning came and no clock was missed or met since
    customer_messages: int = 0
    agent_messages: int = 0
    bot_messages: int = 0
    automatic_messages: int = 0
    first_response_at: datetime | None = None
    first_response_agent_id: str | None = None
    first_bot_response_at: datetime | None = None
    unanswered_since: datetime | None = None
    next_replies: int = 0
    next_reply_seconds: float = 0.0
    queued_at: datetime | None = None
    queue_waits: int = 0
    queue_wait_seconds: float = 0.0
    accepted_at: datetime | None = None
    agent_id: str | None = None  # the agent holding it now
    agents: list[str] = Field(default_factory=list)  # every agent who accepted it, in order
    offers: dict[str, int] = Field(default_factory=dict)
    transfers: int = 0
    switches: list[str] = Field(default_factory=list)  # "sms>whatsapp"
    bot_involved: bool = False
    sla_policy: bool = False
    sla_missed: list[str] = Field(default_factory=list)
    resolved_at: datetime | None = None
    resolved_by: str | None = None  # "agent", "bot" or "nobody"
    resolved_agent_id: str | None = None
    csat: Csat | None = None
    # Each duration metric of the cycle in seconds (calendar and business time); the waits that
    # occur several times in a cycle (next reply, queue wait) are summed.
    durations: dict[str, float] = Field(default_factory=dict)
    business: dict[str, float] = Field(default_factory=dict)
    version: int = 0
    seen: list[str] = Field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    @property
    def humans(self) -> bool:
        return self.agent_messages > 0 or self.accepted_at is not None

    @property
    def credited_agents(self) -> list[str]:
        """Who a survey about this cycle credits: the agent who resolved it, else every agent
        who held it (the agent holding it at the resolution is what `resolved_agent_id` keeps,
        so a later unassignment never moves the credit)."""
        if self.resolved_agent_id:
            return [self.resolved_agent_id]
        if self.agents:
            return list(dict.fromkeys(self.agents))
        return [self.first_response_agent_id] if self.first_response_agent_id else []


@dataclass(frozen=True)
class Increment:
    """Add `amount` to `counter` in the cycle's start hour: overall, for its channel and queue,
    and for each agent in `agents` (figures credited to an agent)."""

    counter: str
    amount: float = 1
    agents: tuple[str, ...] = ()


@dataclass
class Folded:
    state: CycleState | None
    increments: list[Increment] = field(default_factory=list)
    gauges: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (queue, channel, gauge) → ±n
    changed: bool = False


# Business seconds between two instants for a queue (the schedule in force; a queue without a
# schedule is always open, so business time equals calendar time).
BusinessClock = Callable[[str, datetime, datetime], float]


def cycle_id_for(conversation_id: str, first_message_id: str) -> str:
    """A cycle's id: `cyc_` + the time part of its first customer message id (so ids sort by
    start) + a digest of the conversation and message (unique, and the same on every retry)."""
    ulid = first_message_id.removeprefix("msg_")
    digest = hashlib.sha256(f"{conversation_id}\n{first_message_id}".encode()).hexdigest()[:12].upper()
    return f"cyc_{ulid[:10]}{digest}"


def counter_name(prefix: str, metric: str, part: str) -> str:
    return f"{prefix}:{metric}:{part}"


def _durations(metric: str, seconds: float, business: float, agents: tuple[str, ...] = ()) -> list[Increment]:
    seconds, business = max(0.0, seconds), max(0.0, business)
    return [
        Increment(counter_name("d", metric, "n"), 1, agents),
        Increment(counter_name("d", metric, "s"), round(seconds, 3), agents),
        Increment(counter_name("d", metric, f"h{histogram.bucket_of(seconds)}"), 1, agents),
        Increment(counter_name("b", metric, "n"), 1, agents),
        Increment(counter_name("b", metric, "s"), round(business, 3), agents),
        Increment(counter_name("b", metric, f"h{histogram.bucket_of(business)}"), 1, agents),
    ]


def _timed(
    metric: str, queue: str, start: datetime, end: datetime, business: BusinessClock, agents: tuple[str, ...] = ()
) -> list[Increment]:
    """The increments of one duration from `start` to `end`, in calendar and in business time."""
    return _durations(metric, _seconds(start, end), business(queue, start, end), agents)


def _count(metric: str, agents: tuple[str, ...] = (), amount: float = 1) -> Increment:
    return Increment(f"n:{metric}", amount, agents)


def _at(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _gauge_key(state: CycleState) -> tuple[str, str]:
    return (state.line_queue or state.queue or NO_QUEUE, state.channel)


def _gauges_of(state: CycleState | None) -> dict[tuple[str, str, str], int]:
    if state is None or not state.open:
        return {}
    queue, channel = _gauge_key(state)
    held = {(queue, channel, "open"): 1}
    if state.phase in (Phase.WAITING, Phase.OFFERED, Phase.ASSIGNED):
        held[(queue, channel, state.phase.value)] = 1
    if state.at_risk:
        held[(queue, channel, "at_risk")] = 1
    return held


def gauge_moves(before: CycleState | None, after: CycleState | None) -> dict[tuple[str, str, str], int]:
    was, now = _gauges_of(before), _gauges_of(after)
    moves = {key: now.get(key, 0) - was.get(key, 0) for key in set(was) | set(now)}
    return {key: delta for key, delta in moves.items() if delta}


def starts_cycle(state: CycleState | None, event: CrmEvent) -> bool:
    message = event.data.get("message") or {}
    return (
        event.type == "message.created"
        and message.get("direction") == "inbound"
        and not event.data.get("survey_answer")
        and (state is None or not state.open)
    )


def new_cycle(event: CrmEvent, queue: str | None) -> CycleState:
    message = event.data["message"]
    conversation = event.data.get("conversation") or {}
    started = _at(message.get("created_at")) or event.timestamp
    channel = str(message.get("channel") or "unknown")
    return CycleState(
        cycle_id=cycle_id_for(str(message.get("conversation_id") or conversation.get("id")), str(message["id"])),
        conversation_id=str(message.get("conversation_id") or conversation.get("id")),
        customer_id=str(message.get("customer_id") or conversation.get("customer_id") or ""),
        started_at=started,
        channel=channel,
        last_channel=channel,
        queue=queue or NO_QUEUE,
    )


def fold(state: CycleState | None, event: CrmEvent, business: BusinessClock) -> Folded:
    """The next state of the conversation's current cycle after `event`, with what to count."""
    if event.type not in FOLDED_EVENTS:
        return Folded(state)
    if state is not None and event.id in state.seen:
        return Folded(state)  # counted already (a retry)
    increments: list[Increment] = []
    before = state
    if starts_cycle(state, event):
        state = new_cycle(event, event.data.get("queue"))
        if before is not None:  # a late retry of the last cycle's events is still recognised
            state = state.model_copy(update={"seen": before.seen})
        increments.append(_count("cycles"))
    if state is None:
        return Folded(None)  # nothing to count before a customer's first message
    after = _apply(state, event, business, increments)
    if after is None:
        if before is None or before.cycle_id != state.cycle_id:
            after = state  # the cycle's first message: counted even when nothing else changed
        else:
            return Folded(before)
    after = _with_durations(after, increments).model_copy(update={"seen": [*after.seen, event.id][-SEEN_EVENTS:]})
    return Folded(after, increments, gauge_moves(before, after), changed=True)


def _with_durations(state: CycleState, increments: list[Increment]) -> CycleState:
    durations, business = dict(state.durations), dict(state.business)
    for increment in increments:
        prefix, _, rest = increment.counter.partition(":")
        metric, _, part = rest.rpartition(":")
        if part != "s" or prefix not in ("d", "b"):
            continue
        into = durations if prefix == "d" else business
        into[metric] = round(into.get(metric, 0.0) + increment.amount, 3)
    return state.model_copy(update={"durations": durations, "business": business})


def _apply(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    handler = _HANDLERS.get(event.type)
    return handler(state, event, business, out) if handler else None


def _message(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    message = event.data.get("message") or {}
    at = _at(message.get("created_at")) or event.timestamp
    if message.get("direction") == "inbound":
        if not state.open or event.data.get("survey_answer"):
            return None  # a rating or its comment belongs to the survey, not to a cycle
        update: dict[str, Any] = {
            "customer_messages": state.customer_messages + 1,
            "last_channel": str(message.get("channel") or state.last_channel),
        }
        if state.unanswered_since is None:
            update["unanswered_since"] = at
        return state.model_copy(update=update)
    if message.get("direction") != "outbound" or not state.open or at < state.started_at:
        return None
    sent_by = message.get("sent_by")
    if sent_by == "agent":
        agent = message.get("agent_id")
        agents = (str(agent),) if agent else ()
        update = {"agent_messages": state.agent_messages + 1, "unanswered_since": None}
        if state.first_response_at is None:
            update["first_response_at"] = at
            update["first_response_agent_id"] = agents[0] if agents else None
            out.extend(_timed("first_response", state.queue, state.started_at, at, business, agents))
        elif state.unanswered_since is not None:
            waited = _seconds(state.unanswered_since, at)
            out.extend(_timed("next_reply", state.queue, state.unanswered_since, at, business, agents))
            update["next_replies"] = state.next_replies + 1
            update["next_reply_seconds"] = round(state.next_reply_seconds + max(0.0, waited), 3)
        return state.model_copy(update=update)
    if sent_by == "bot":
        update = {"bot_messages": state.bot_messages + 1, "bot_involved": True}
        if state.first_bot_response_at is None:
            update["first_bot_response_at"] = at
            out.extend(_timed("first_bot_response", state.queue, state.started_at, at, business))
        return state.model_copy(update=update)
    return state.model_copy(update={"automatic_messages": state.automatic_messages + 1})


def _queued(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    if not state.open:
        return None
    task = event.data.get("task") or {}
    at = _at(task.get("enqueued_at")) or event.timestamp
    queue = str(task.get("queue") or state.queue)
    update: dict[str, Any] = {"phase": Phase.WAITING, "line_queue": queue, "line_since": at, "agent_id": None}
    if state.queued_at is None:
        update["queued_at"] = at
        if state.queue == NO_QUEUE:
            update["queue"] = queue
        out.append(_count("queued"))
    if event.type == "conversation.transferred":
        update["transfers"] = state.transfers + 1
        source = event.data.get("from_agent_id")
        out.append(_count("transfers", (str(source),) if source else ()))
    return state.model_copy(update=update)


def _offer(event: CrmEvent) -> dict[str, Any]:
    return event.data.get("offer") or {}


def _offer_created(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState:
    agent = _offer(event).get("agent_id")
    out.append(_count("offers_created", (str(agent),) if agent else ()))
    offers = {**state.offers, "created": state.offers.get("created", 0) + 1}
    return state.model_copy(update={"offers": offers, "phase": Phase.OFFERED if state.open else state.phase})


def _offer_accepted(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState:
    offer = _offer(event)
    agent = str(offer.get("agent_id") or "")
    at = _at(offer.get("decided_at")) or event.timestamp
    agents = (agent,) if agent else ()
    out.append(_count("offers_accepted", agents))
    update: dict[str, Any] = {
        "offers": {**state.offers, "accepted": state.offers.get("accepted", 0) + 1},
        "agent_id": agent or None,
        "agents": [*state.agents, agent] if agent and agent not in state.agents else state.agents,
    }
    if state.open:
        update["phase"] = Phase.ASSIGNED
        since = state.line_since or state.queued_at
        if since is not None:
            waited = _seconds(since, at)
            out.extend(_timed("queue_wait", state.line_queue or state.queue, since, at, business, agents))
            update["queue_waits"] = state.queue_waits + 1
            update["queue_wait_seconds"] = round(state.queue_wait_seconds + max(0.0, waited), 3)
        update["line_since"] = None
        if state.accepted_at is None:
            update["accepted_at"] = at
    return state.model_copy(update=update)


def _offer_released(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState:
    outcome = event.type.removeprefix("offer.")
    agent = _offer(event).get("agent_id")
    if outcome in ("rejected", "expired"):
        out.append(_count(f"offers_{outcome}", (str(agent),) if agent else ()))
    offers = {**state.offers, outcome: state.offers.get(outcome, 0) + 1}
    phase = Phase.WAITING if state.open and state.phase is Phase.OFFERED else state.phase
    return state.model_copy(update={"offers": offers, "phase": phase})


def _resolved(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    if not state.open:
        return None
    at = event.timestamp
    conversation = event.data.get("conversation") or {}
    resolved_at = _at(conversation.get("resolved_at")) or at
    agent = event.data.get("agent_id") or state.agent_id
    if state.humans:
        resolved_by, credited = "agent", ((str(agent),) if agent else ())
    else:
        resolved_by, credited = ("bot" if state.bot_involved else "nobody"), ()
    out.append(_count("resolved", credited))
    out.extend(_timed("resolution_time", state.queue, state.started_at, resolved_at, business, credited))
    if state.accepted_at is not None:
        out.extend(_timed("handle_time", state.queue, state.accepted_at, resolved_at, business, credited))
    if resolved_by == "bot":
        out.append(_count("resolved_without_human"))
    policy = state.sla_policy or bool(conversation.get("sla"))
    if policy and not state.sla_missed:
        out.append(_count("sla_met", credited))
    return state.model_copy(
        update={
            "phase": Phase.RESOLVED,
            "resolved_at": resolved_at,
            "resolved_by": resolved_by,
            "resolved_agent_id": str(agent) if resolved_by == "agent" and agent else None,
            "sla_policy": policy,
            "at_risk": False,
            "line_since": None,
        }
    )


def _linked(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    if not event.data.get("link_code"):
        return None  # phone verification linked an identity: no handoff link was followed
    target = str((event.data.get("message") or {}).get("channel") or "")
    if not target:
        return None
    switch = f"{state.last_channel}>{target}"
    out.append(Increment(f"x:{state.last_channel}:{target}"))
    return state.model_copy(update={"switches": [*state.switches, switch]})


def _control(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    controller = event.data.get("controller") or {}
    if controller.get("kind") != "bot" or not state.open:
        return None
    return state.model_copy(update={"bot_involved": True})


def _sla(state: CycleState, event: CrmEvent, business: BusinessClock, out: list[Increment]) -> CycleState | None:
    if not state.open:
        return None
    if event.type == "sla.warning":
        return state.model_copy(update={"at_risk": True, "sla_policy": True})
    target = str(event.data.get("target") or "unknown")
    if target in state.sla_missed:
        return None
    if not state.sla_missed:
        out.append(_count("sla_missed", (state.agent_id,) if state.agent_id else ()))
    return state.model_copy(update={"sla_missed": [*state.sla_missed, target], "sla_policy": True, "at_risk": False})


def fold_survey(state: CycleState, event: CrmEvent) -> Folded:
    """A survey event for the cycle it belongs to (the current one or an earlier one)."""
    if event.id in state.seen:
        return Folded(state)
    survey = event.data.get("survey") or {}
    out: list[Increment] = []
    agents = tuple(str(agent) for agent in survey.get("agent_ids") or [])
    if event.type == "csat.requested":
        if state.csat is not None and state.csat.survey_id == survey.get("id"):
            return Folded(state)
        csat = Csat(
            survey_id=str(survey.get("id")),
            sent_at=_at(survey.get("sent_at")) or event.timestamp,
            channel=str(survey.get("channel") or state.last_channel),
            agent_ids=list(agents),
        )
        out.append(_count("csat_sent", agents))
        after = state.model_copy(update={"csat": csat})
    else:
        rating = survey.get("rating")
        if state.csat is None or state.csat.survey_id != survey.get("id") or not isinstance(rating, int):
            return Folded(state)
        previous = state.csat.rating
        agents = tuple(state.csat.agent_ids)  # credited when the survey was sent
        if previous is None:
            out.append(_count("csat_responses", agents))
        if previous != rating:
            if previous is not None:
                out.append(_count(f"csat_r{previous}", agents, -1))
            out.append(_count(f"csat_r{rating}", agents))
            out.append(_count("csat_sum", agents, rating - (previous or 0)))
        csat = state.csat.model_copy(
            update={
                "rating": rating,
                "comment": survey.get("comment") or state.csat.comment,
                "answered_at": _at(survey.get("answered_at")) or event.timestamp,
            }
        )
        after = state.model_copy(update={"csat": csat})
    after = after.model_copy(update={"seen": [*after.seen, event.id][-SEEN_EVENTS:]})
    return Folded(after, out, {}, changed=True)


_HANDLERS: dict[str, Callable[[CycleState, CrmEvent, BusinessClock, list[Increment]], CycleState | None]] = {
    "message.created": _message,
    "conversation.queued": _queued,
    "conversation.transferred": _queued,
    "offer.created": _offer_created,
    "offer.accepted": _offer_accepted,
    "offer.rejected": _offer_released,
    "offer.expired": _offer_released,
    "offer.rescinded": _offer_released,
    "conversation.resolved": _resolved,
    "conversation.channel_linked": _linked,
    "conversation.control_changed": _control,
    "sla.warning": _sla,
    "sla.breached": _sla,
}
