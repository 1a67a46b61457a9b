"""A channel's rules for what the business may send, as data, and the pure checks that apply them.

Each channel module states the rules of the channels it carries (`RULES`, channels/registry.py);
the outbound path (domain/outbound.py) applies them to every message, and notifications
(domain/notifications.py) to choose a channel. A channel's rules are whatever its provider
enforces: the longest body, media per message, the customer-service window after the customer's
last message, what may still go out after it closes, and single-use reply tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.domain.customers import Customer
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import HUMAN_AGENT_TAG, RefusalKind, Refused, email_text


@dataclass(frozen=True)
class ChannelRules:
    name: str  # as people write it, for the messages refusals carry ("WhatsApp", "WeChat")
    body_chars: int  # the longest body the provider takes
    media: int = 1  # attachments per message
    body_bytes: int | None = None  # a limit in UTF-8 bytes of the text, media links included (WeChat)
    media_as_links: bool = False  # media go out as links in the text (email, WeChat)
    subject: bool = False  # the channel carries a subject (email)
    # The customer-service window: the business may write only this long after the customer's last
    # message on the channel (None: no window).
    window: timedelta | None = None
    # Outside the window only a pre-approved template may go out (WhatsApp).
    template_outside_window: bool = False
    # Outside the window a human agent may still answer this long, with Meta's HUMAN_AGENT tag
    # (Messenger, Instagram); automated messages may not.
    human_agent_window: timedelta | None = None
    # A reply token the customer's message carried may be used this long after it (LINE).
    reply_token_ttl: timedelta | None = None


def check_content(channel: Channel, rules: ChannelRules, body: str, media_urls: list[str], subject: str | None) -> None:
    if not body.strip() and not media_urls:
        raise Refused(RefusalKind.INVALID, "invalid_request", "give a non-empty 'body' or at least one of 'media_urls'")
    if len(body) > rules.body_chars:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "body_too_long",
            f"a {channel.value} body holds at most {rules.body_chars} characters; this one has {len(body)}",
        )
    if rules.body_bytes is not None and len(email_text(body, media_urls).encode("utf-8")) > rules.body_bytes:
        text = f"a {channel.value} message holds at most {rules.body_bytes} bytes of text, links included"
        raise Refused(RefusalKind.UNPROCESSABLE, "body_too_long", text)
    if len(media_urls) > rules.media:
        raise Refused(
            RefusalKind.UNPROCESSABLE, "too_many_media", f"at most {rules.media} media per {channel.value} message"
        )
    if subject is not None and not rules.subject:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "subject_not_supported",
            f"a subject is only sent by email, and this reply goes by {channel.value}",
        )


def window_open(rules: ChannelRules, customer: Customer, channel: Channel, now: datetime) -> bool:
    """True when the channel has no window or the customer wrote on it recently enough."""
    if rules.window is None:
        return True
    last = customer.last_inbound_by_channel.get(channel.value)
    return last is not None and now - last <= rules.window


def window_tag(
    rules: ChannelRules, customer: Customer, channel: Channel, now: datetime, *, human: bool, template: bool
) -> str | None:
    """What lets a message out on `channel` now: None (the window is open, or a template goes
    out), the HUMAN_AGENT tag (a human answering after the window), or a Refused saying why not.
    `human`: an agent (or a bot answering for one) sends it; `template`: it is a pre-approved template."""
    if window_open(rules, customer, channel, now):
        return None
    assert rules.window is not None
    last = customer.last_inbound_by_channel.get(channel.value)
    hours = int(rules.window.total_seconds() // 3600)
    if rules.template_outside_window:
        if template:
            return None
        if last is None:
            reason = (
                f"the customer has never written on {rules.name}, so a free-form message cannot be sent; "
                f"a pre-approved {rules.name} template is needed"
            )
        else:
            reason = (
                f"the customer last wrote on {rules.name} at {last.isoformat()}, more than {hours} hours ago; "
                f"outside the customer-service window only a pre-approved {rules.name} template can be sent"
            )
        raise Refused(RefusalKind.UNPROCESSABLE, f"{channel.value}_window_closed", reason)
    if rules.human_agent_window is not None and human:
        if last is not None and now - last <= rules.human_agent_window:
            return HUMAN_AGENT_TAG
        days = rules.human_agent_window.days
        when = f"last wrote at {last.isoformat()}" if last else "has never written"
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "messaging_window_closed",
            f"the customer {when} on {channel.value}; a human agent may answer only within {days} days of "
            "the customer's last message",
        )
    raise Refused(
        RefusalKind.UNPROCESSABLE,
        "messaging_window_closed",
        f"{rules.name} allows a business to write only within {hours} hours of the customer's last message",
    )


def fresh_reply_token(rules: ChannelRules, customer: Customer, channel: Channel, now: datetime) -> str | None:
    """A reply token for this channel young enough to be worth trying (it is used at most once)."""
    token = customer.reply_token
    if rules.reply_token_ttl is None or token is None or token.channel is not channel:
        return None
    return token.token if now - token.received_at <= rules.reply_token_ttl else None
