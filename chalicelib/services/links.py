"""Handoff links: invite a customer to another channel, and bind the new identity when they come.

Redemption happens at ingest, before the sender is resolved to a customer, so the very message
that carries the code already lands in the customer's existing thread.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from chalicelib.config import secret, settings
from chalicelib.domain.customers import thread_note
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import new_id
from chalicelib.domain.links import (
    InvitationAddresses,
    Link,
    LinkRefused,
    LinkTarget,
    check_redeemable,
    find_code,
    invitation_text,
    new_code,
    new_link,
    read_token,
    sign_token,
)
from chalicelib.domain.messages import Channel, InboundMessage, utcnow
from chalicelib.observability import logger
from chalicelib.services.errors import InvalidRequest, NotFound
from chalicelib.store import links as link_store
from chalicelib.store import thread


def _ttl() -> timedelta:
    return timedelta(hours=float(os.environ.get("LINK_TTL_HOURS", "24")))


def _link_secret() -> str:
    value = secret("link_secret")
    if not value:
        raise InvalidRequest("LINK_SECRET is not configured; links cannot be signed")
    return value


def _allocate(customer_id: str, conversation_id: str, target: LinkTarget, created_by: str) -> Link:
    """Store a new link under a fresh code (a code already in use is drawn again)."""
    now = utcnow()
    for _ in range(5):
        link = new_link(new_code(), customer_id, conversation_id, target, created_by, now, _ttl())
        try:
            link_store.put_link(link)
            return link
        except link_store.CodeTaken:
            continue
    raise InvalidRequest("could not allocate a link code; retry")


def create_link(
    conversation_id: str, target: LinkTarget, agent_id: str, via: Channel | None
) -> tuple[int, dict[str, Any]]:
    """Create a link and send the invitation on the customer's current (or the given) channel."""
    from chalicelib.services import replies

    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation '{conversation_id}'")
    link = _allocate(conversation.customer_id, conversation.id, target, agent_id)
    config = replies.reply_settings()
    url = None
    if target is LinkTarget.WEBCHAT:
        token = sign_token(link.code, link.expires_at, _link_secret())
        url = f"{settings().public_base_url.rstrip('/')}/webchat?link={token}"
    try:
        hub = settings()
        addresses = InvitationAddresses(
            webchat_url=url,
            whatsapp_number=config.twilio_whatsapp_from or hub.meta_whatsapp_number or None,
            sms_number=config.twilio_sms_from or None,
            email_address=config.sendgrid_from_email or None,
            telegram_bot=hub.telegram_bot_username or None,
            messenger_page=hub.meta_page_username or hub.meta_page_id or None,
            line_basic_id=hub.line_basic_id or None,
        )
        text = invitation_text(link, addresses, business=os.environ.get("BUSINESS_NAME", "us"))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    request: dict[str, Any] = {"body": text, "agent_id": agent_id}
    if via is not None:
        request["channel"] = via.value
    outcome = replies.send_reply(conversation.id, request, f"link-{link.code}")
    if outcome.status_code >= 300:
        return outcome.status_code, outcome.body
    view = {
        "code": f"LINK-{link.code}",
        "target": target.value,
        "expires_at": link.expires_at.isoformat().replace("+00:00", "Z"),
        "url": url,
        "invitation": outcome.body,
    }
    return 201, view


def _mark_switch(link: Link, identity: Identity, channel: Channel, now: datetime) -> None:
    """A note in the thread and an event for the CRM: the customer continued on another channel."""
    from chalicelib.api.models import message_view
    from chalicelib.services import events

    text = f"Customer continued on {channel.value} (link LINK-{link.code} sent by {link.created_by})"
    note = thread_note(new_id("msg"), link.conversation_id, link.customer_id, channel, text)
    thread.record_event(note)
    events.emit(
        "conversation.channel_linked",
        {
            "message": message_view(note),
            "identity": identity.model_dump(mode="json"),
            "link_code": link.code,
            "customer_id": link.customer_id,
            "conversation_id": link.conversation_id,
            "linked_by": link.created_by,
            "at": now.isoformat(),
        },
        link.code,
    )


def redeem(code: str, identity: Identity, channel: Channel) -> Link:
    """Bind `identity` to the customer the link was made for; LinkRefused says why not."""
    now = utcnow()
    link = link_store.get_link(code)
    if link is not None and link.redeemed_identity == identity.key:
        return link  # the same customer redeeming again (a provider retry): already done
    link = check_redeemable(link, now)
    try:
        previous = link_store.redeem(link, identity, now)
    except link_store.AlreadyRedeemed:
        raise LinkRefused("That code was already used. Please ask us for a new link.") from None
    _mark_switch(link, identity, channel, now)
    logger.info("link redeemed", extra={"code": code, "customer_id": link.customer_id, "previous": previous})
    return link


def redeem_from_message(msg: InboundMessage) -> str | None:
    """Redeem a code an inbound message carries. Returns a notice for the customer when refused."""
    code = find_code(msg.link_code or "") or find_code(msg.body) or find_code(msg.subject or "")
    if code is None:
        return None
    try:
        redeem(code, msg.sender, msg.channel)
    except LinkRefused as refused:
        logger.info("link refused", extra={"code": code, "reason": str(refused)})
        return str(refused)
    return None


def redeem_token(token: str, identity: Identity) -> Link:
    """For web chat: a signed link token in the page URL binds the visitor to the customer."""
    code = read_token(token, _link_secret(), utcnow())
    return redeem(code, identity, Channel.WEBCHAT)


def identity_history(customer_id: str) -> list[dict[str, Any]]:
    return link_store.identity_history(customer_id)


def webchat_return_url(customer_id: str, conversation_id: str, created_by: str) -> str:
    """A fresh single-use web chat link for this customer, without sending it anywhere."""
    link = _allocate(customer_id, conversation_id, LinkTarget.WEBCHAT, created_by)
    token = sign_token(link.code, link.expires_at, _link_secret())
    return f"{settings().public_base_url.rstrip('/')}/webchat?link={token}"


def tell_refusal(msg: InboundMessage, notice: str) -> None:
    """Email has no inline reply like TwiML: the refusal goes back as an email of its own.
    Best effort; the inbound message is stored either way."""
    if msg.channel is not Channel.EMAIL:
        return
    from chalicelib.services import notifications

    outcome = notifications.create_notification(
        {
            "customer": {"email": msg.sender.value},
            "text": notice,
            "channels": ["email"],
            "urgent": True,
            "subject": "About your link code",
        },
        f"link-refusal-{msg.dedupe_key}"[:255],
    )
    logger.info("link refusal sent by email", extra={"status": outcome.status_code})
