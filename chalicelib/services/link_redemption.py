"""Redeeming a handoff link code: the customer followed an invitation onto another channel, and the
new identity joins the customer who was invited.

Redemption happens at ingest, before the sender is resolved to a customer, so the very message
that carries the code already lands in the customer's existing thread. Creating and sending
invitations is services/links.py; this module sends nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.api.models import message_view
from chalicelib.config import secret
from chalicelib.domain.customers import thread_note
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import new_id
from chalicelib.domain.links import Link, LinkRefused, check_redeemable, find_code, read_token
from chalicelib.domain.messages import Channel, InboundMessage, utcnow
from chalicelib.observability import logger
from chalicelib.services import events
from chalicelib.services.errors import InvalidRequest
from chalicelib.store import links as link_store
from chalicelib.store import thread


def link_secret() -> str:
    value = secret("link_secret")
    if not value:
        raise InvalidRequest("LINK_SECRET is not configured; links cannot be signed")
    return value


def carries_code(msg: InboundMessage) -> bool:
    """Cheap: whether the message may hold a link code at all."""
    return msg.link_code is not None or find_code(msg.body) is not None or find_code(msg.subject or "") is not None


def _mark_switch(link: Link, identity: Identity, channel: Channel, now: datetime) -> None:
    """A note in the thread and an event for the CRM: the customer continued on another channel."""
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
    code = read_token(token, link_secret(), utcnow())
    return redeem(code, identity, Channel.WEBCHAT)


def identity_history(customer_id: str) -> list[dict[str, Any]]:
    return link_store.identity_history(customer_id)
