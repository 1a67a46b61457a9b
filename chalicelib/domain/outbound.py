"""What the hub sends, as pure decisions: one outgoing message, why it is sent, and whether (and how)
the customer's channel can take it now.

Every message the hub sends (an agent's or a bot's reply, a notification, a consent answer, a link
invitation or refusal, a system notice) is described by an `OutboundMessage` and planned here;
services/outbound.py is the only code that then hands it to a channel. Refusals are `Refused`
naming the HTTP status and error code an API answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from chalicelib.domain.channel_rules import ChannelRules, check_content, fresh_reply_token, window_tag
from chalicelib.domain.consent import opted_out_reason
from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import (
    InboundEmail,
    RefusalKind,
    Refused,
    ReplyPlan,
    choose_channel,
    email_text,
    recipient_for,
    reply_subject,
    reply_threading,
)


class Purpose(StrEnum):
    AGENT_REPLY = "agent_reply"
    BOT_REPLY = "bot_reply"
    NOTIFICATION = "notification"
    CONSENT_ANSWER = "consent_answer"  # the confirmation of STOP/START/HELP
    LINK_INVITATION = "link_invitation"
    LINK_REFUSAL = "link_refusal"  # a handoff link code that could not be used
    AUTO_REPLY = "auto_reply"  # an out-of-hours answer or an acknowledgement of a new conversation
    SYSTEM_NOTICE = "system_notice"
    SURVEY = "survey"  # a satisfaction survey after a resolution, and its thanks


# Answers to what the customer just wrote: they go out on the channel the customer wrote on,
# within every window (the customer's message opened it).
ANSWERS = (Purpose.CONSENT_ANSWER, Purpose.LINK_REFUSAL, Purpose.AUTO_REPLY)
# A human (or a bot standing in for one) answering: Meta's HUMAN_AGENT tag may extend the window.
REPLIES = (Purpose.AGENT_REPLY, Purpose.BOT_REPLY)


def written_by(purpose: Purpose) -> str:
    """Who the thread (and analytics) says wrote a message: "agent" for an agent's reply, "bot"
    for a bot's, "system" for everything the hub sends on its own."""
    if purpose is Purpose.AGENT_REPLY:
        return "agent"
    if purpose is Purpose.BOT_REPLY:
        return "bot"
    return "system"


class SenderType(StrEnum):
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


@dataclass(frozen=True)
class Sender:
    type: SenderType = SenderType.SYSTEM
    id: str | None = None


@dataclass(frozen=True)
class Template:
    """A pre-approved template, for WhatsApp outside its 24-hour window: a Twilio Content SID or
    the name of a template approved in WhatsApp Manager (Meta), with its parameters."""

    preview: str  # what the thread shows of it
    params: dict[str, str] = field(default_factory=dict)
    content_sid: str | None = None
    meta_name: str | None = None


def parameter_order(key: str) -> tuple[int, str]:
    """Template parameters {{1}}, {{2}}, ... in number order (`10` after `9`), named ones after."""
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def ordered_parameters(params: dict[str, str]) -> tuple[str, ...]:
    """The values of a template's parameters, in the order a positional template takes them."""
    return tuple(params[key] for key in sorted(params, key=parameter_order))


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send. `channel` None means the channel the customer last wrote from."""

    purpose: Purpose
    text: str = ""
    channel: Channel | str | None = None
    media_urls: tuple[str, ...] = ()
    subject: str | None = None
    template: Template | None = None
    sender: Sender = field(default_factory=Sender)
    # Answers the customer can tap ((id, label), e.g. a survey's ratings): each channel shows them
    # in its own form (WhatsApp list, quick replies, inline keyboard); others send the text alone.
    choices: tuple[tuple[str, str], ...] = ()


def choose(message: OutboundMessage, customer: Customer) -> Channel:
    requested = message.channel.value if isinstance(message.channel, Channel) else message.channel
    return choose_channel(requested, customer)


def check_consent(message: OutboundMessage, customer: Customer, channel: Channel) -> None:
    """Never send on a channel the customer opted out of. The one exception is the answer to the
    opt-out itself (the confirmation that they will hear nothing more)."""
    if message.purpose is Purpose.CONSENT_ANSWER:
        return
    reason = opted_out_reason(customer, channel)
    if reason:
        raise Refused(RefusalKind.UNPROCESSABLE, "opted_out", f"{reason}; nothing was sent on {channel.value}")


def plan(
    message: OutboundMessage,
    customer: Customer,
    channel: Channel,
    now: datetime,
    latest_email: InboundEmail | None,
    rules: ChannelRules,
) -> ReplyPlan:
    """Everything that can be checked before sending, and exactly what to send (pure). `rules`
    are the channel's, as the module that carries it states them (channels/registry.py)."""
    check_consent(message, customer, channel)
    whatsapp_provider = customer.whatsapp_provider if channel is Channel.WHATSAPP else None
    media = list(message.media_urls)
    if message.template is None:
        check_content(channel, rules, message.text, media, message.subject)
    recipient = recipient_for(channel, customer)
    tag = None
    if message.purpose not in ANSWERS:  # an answer to what the customer just wrote is inside every window
        tag = window_tag(
            rules, customer, channel, now, human=message.purpose in REPLIES, template=message.template is not None
        )
    if channel is not Channel.EMAIL:
        return ReplyPlan(
            channel=channel,
            recipient=recipient,
            body=message.template.preview if message.template else message.text,
            media_urls=media,
            whatsapp_provider=whatsapp_provider,
            message_tag=tag,
            reply_token=fresh_reply_token(rules, customer, channel, now),
        )
    subject = message.subject
    if message.purpose in REPLIES or subject is None:
        subject = reply_subject(subject, latest_email.subject if latest_email else None)
    return ReplyPlan(
        channel=channel,
        recipient=recipient,
        body=message.text,
        media_urls=media,
        subject=subject,
        email=reply_threading(latest_email.threading if latest_email else None) if message.purpose in REPLIES else None,
    )


def email_body(plan: ReplyPlan, footer: str) -> str:
    """An email's text: the body, media as links, and the footer every email ends with."""
    return email_text(plan.body, plan.media_urls) + footer
