"""Every timer the timer queue carries, and the reactions that cross use cases.

A reaction that crosses use cases goes through the timer queue instead of an import back up
(../shared/ARCHITECTURE.md, "Reactions are events, not imports"): a delivery that failed moves a
notification to its next channel (`DeliveryFailed`), a web chat reply to a visitor who may have
left the page may also go out as a notification (`WebchatReplySent`). Those are timers due at
once; the others wait for their moment (offer timeouts, re-checks, grace periods, quiet hours).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from chalicelib.domain.messages import DeliveryStatus
from chalicelib.domain.notifications import NotificationDue
from chalicelib.domain.routing_task import AgentGrace, OfferTimeout, TaskRecheck
from chalicelib.domain.sla_clocks import SlaTarget


class DeliveryFailed(BaseModel):
    """A provider said an outbound message failed or was undelivered."""

    type: Literal["delivery_failed"] = "delivery_failed"
    message_id: str
    status: DeliveryStatus
    error_code: str | None = None


class WebchatReplySent(BaseModel):
    """An agent replied on web chat: if the visitor's page is gone, the reply follows them."""

    type: Literal["webchat_reply_sent"] = "webchat_reply_sent"
    message_id: str
    conversation_id: str
    customer_id: str
    agent_name: str


class SlaDue(BaseModel):
    """A service-level clock reaches its warning or its target."""

    type: Literal["sla_due"] = "sla_due"
    conversation_id: str
    target: SlaTarget
    stage: Literal["warning", "breach"]
    due_at: datetime  # the clock's moment it was set for (a moved clock ignores it)


class NoAgentReply(BaseModel):
    """An accepted conversation's agent has not replied for the policy's time: escalate it."""

    type: Literal["no_agent_reply"] = "no_agent_reply"
    conversation_id: str
    agent_id: str
    accepted_at: datetime


class SurveyDue(BaseModel):
    """A resolved cycle's satisfaction survey is due (after the configured delay)."""

    type: Literal["survey_due"] = "survey_due"
    conversation_id: str
    cycle_id: str


TimerMessage = Annotated[
    OfferTimeout
    | TaskRecheck
    | AgentGrace
    | NotificationDue
    | DeliveryFailed
    | WebchatReplySent
    | SlaDue
    | NoAgentReply
    | SurveyDue,
    Field(discriminator="type"),
]


class Timer(BaseModel):
    due_at: datetime
    message: TimerMessage


timer_message = TypeAdapter(Timer)
