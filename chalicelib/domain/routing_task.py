"""Messages on the routing queue (SQS FIFO): what the routing worker is asked to do."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from chalicelib.domain.messages import Channel


class RoutingTask(BaseModel):
    """A stored inbound message: tell the CRM, and put the conversation in line if nobody holds it."""

    type: Literal["inbound_message"] = "inbound_message"
    customer_id: str
    conversation_id: str
    message_id: str
    channel: Channel
    received_at: datetime
    new_customer: bool = False
    text: str = Field(default="", max_length=2000)  # for keyword rules; the full body stays in the table


class MatchAgent(BaseModel):
    """An agent became available or freed capacity: give it the best waiting task it can take."""

    type: Literal["match_agent"] = "match_agent"
    agent_id: str


class MatchTask(BaseModel):
    """A task came back to waiting (offer rejected/expired, transfer): find it an agent."""

    type: Literal["match_task"] = "match_task"
    queue: str
    sort_key: str
    shard: int = Field(default=0, ge=0, le=999)


class HandOff(BaseModel):
    """Control of a conversation passed to humans (domain/control.py): queue it for an agent,
    with the agent who took it first in line when one did."""

    type: Literal["hand_off"] = "hand_off"
    conversation_id: str
    customer_id: str
    preferred_agent: str | None = None


class Escalate(BaseModel):
    """An SLA escalation re-queues a conversation its agent has not answered, to another agent."""

    type: Literal["escalate"] = "escalate"
    conversation_id: str
    agent_id: str
    raise_priority: int = Field(default=0, ge=0, le=9)  # how many levels higher it waits


RoutingMessage = Annotated[RoutingTask | MatchAgent | MatchTask | HandOff | Escalate, Field(discriminator="type")]
routing_message = TypeAdapter(RoutingMessage)


class OfferTimeout(BaseModel):
    type: Literal["offer_timeout"] = "offer_timeout"
    offer_id: str


class TaskRecheck(BaseModel):
    """The task's eligibility changes now (sticky wait over, skills relax): match it again."""

    type: Literal["task_recheck"] = "task_recheck"
    queue: str
    sort_key: str
    shard: int = Field(default=0, ge=0, le=999)


class AgentGrace(BaseModel):
    """An agent went offline at `offline_since`; if still offline, re-queue what it holds."""

    type: Literal["agent_grace"] = "agent_grace"
    agent_id: str
    offline_since: datetime
