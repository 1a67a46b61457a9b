"""An agent's reply planned as the one outbound path plans it (domain/outbound.py), for unit tests."""

from __future__ import annotations

from datetime import datetime

from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.outbound import OutboundMessage, Purpose, plan
from chalicelib.domain.replies import InboundEmail, ReplyPlan
from tests.support.channel_rules import rules_for


def plan_reply(
    *,
    channel: Channel,
    customer: Customer,
    body: str,
    media_urls: list[str],
    subject: str | None,
    now: datetime,
    latest_email: InboundEmail | None = None,
) -> ReplyPlan:
    message = OutboundMessage(
        purpose=Purpose.AGENT_REPLY, text=body, channel=channel, media_urls=tuple(media_urls), subject=subject
    )
    return plan(message, customer, channel, now, latest_email, rules_for(channel, customer.whatsapp_provider))
