"""Handoff links: invite a customer to another channel (`POST /v1/conversations/{id}/links`).

The invitation is a message like any other: it leaves through the one outbound path, on the
customer's current channel (or the one given), and an `Idempotency-Key` makes the request safe to
retry. An agent, a bot or an automation may send it: `agent_id` is recorded when given. Redeeming
the code when the customer comes back is services/link_redemption.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.api.models import LinkRequest
from chalicelib.config import settings
from chalicelib.domain.agents import Agent
from chalicelib.domain.links import (
    InvitationAddresses,
    Link,
    LinkTarget,
    invitation_text,
    new_code,
    new_link,
    sign_token,
)
from chalicelib.domain.messages import Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose, Sender, SenderType
from chalicelib.domain.replies import RefusalKind, Refused
from chalicelib.observability import logger
from chalicelib.services import idempotency, outbound
from chalicelib.services.errors import InvalidRequest, SentNotRecorded, Unavailable, is_storage_failure
from chalicelib.services.idempotency import Claim, Done
from chalicelib.services.link_redemption import link_secret
from chalicelib.store import agents as agent_store
from chalicelib.store import links as link_store


def _allocate(customer_id: str, conversation_id: str, target: LinkTarget, created_by: str) -> Link:
    """Store a new link under a fresh code (a code already in use is drawn again)."""
    now = utcnow()
    ttl = timedelta(hours=settings().link_ttl_hours)
    for _ in range(5):
        link = new_link(new_code(), customer_id, conversation_id, target, created_by, now, ttl)
        try:
            link_store.put_link(link)
            return link
        except link_store.CodeTaken:
            continue
    raise InvalidRequest("could not allocate a link code; retry")


def _webchat_url(link: Link) -> str:
    token = sign_token(link.code, link.expires_at, link_secret())
    return f"{settings().public_base_url.rstrip('/')}/webchat?link={token}"


@dataclass(frozen=True)
class Invitation:
    """A link made and its invitation sent (the message a provider took, or refused for good)."""

    code: str
    target: LinkTarget
    expires_at: datetime
    url: str | None
    message: Message


def create_link(conversation_id: str, request: LinkRequest, idempotency_key: str | None = None) -> Done[Invitation]:
    """Create a link and send the invitation on the customer's current (or the given) channel.
    Raises Refused, ProviderUnavailable / Unavailable (nothing sent), SentNotRecorded."""
    return idempotency.run(
        idempotency_key,
        f"link:{conversation_id}",
        request.model_dump(mode="json"),
        lambda claim: _invite(conversation_id, request, claim),
        encode=lambda invitation: {
            "code": invitation.code,
            "target": invitation.target.value,
            "expires_at": invitation.expires_at.isoformat(),
            "url": invitation.url,
            "message": invitation.message.model_dump(mode="json"),
        },
        decode=lambda data: Invitation(
            code=data["code"],
            target=LinkTarget(data["target"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            url=data["url"],
            message=Message.model_validate(data["message"]),
        ),
    )


def _invite(conversation_id: str, request: LinkRequest, claim: Claim | None) -> Invitation:
    try:
        conversation, customer = outbound.addressee(conversation_id)
        agent = _agent(request.agent_id)
        link = _allocate(customer.id, conversation.id, request.target, request.agent_id or "api")
        url = _webchat_url(link) if request.target is LinkTarget.WEBCHAT else None
        delivered = outbound.send(
            OutboundMessage(
                purpose=Purpose.LINK_INVITATION,
                text=_invitation(link, url),
                channel=request.via,
                sender=Sender(SenderType.AGENT, agent.id) if agent else Sender(),
            ),
            customer,
            conversation,
            agent=agent,
            claim=claim,
        )
    except SentNotRecorded as exc:
        raise SentNotRecorded(f"{exc}; do not resend it") from exc
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("link not sent", extra={"error": type(exc).__name__})
        raise Unavailable("the hub's storage is unavailable; nothing was sent; retry") from exc
    return Invitation(f"LINK-{link.code}", request.target, link.expires_at, url, delivered.message)


def _agent(agent_id: str | None) -> Agent | None:
    """The agent sending the invitation; None for an automation or a bot."""
    if agent_id is None:
        return None
    agent = agent_store.get_agent(agent_id)
    if agent is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"no agent '{agent_id}'")
    return agent


def _invitation(link: Link, url: str | None) -> str:
    hub = settings()
    addresses = InvitationAddresses(
        webchat_url=url,
        whatsapp_number=hub.twilio_whatsapp_from or hub.meta_whatsapp_number or None,
        sms_number=hub.twilio_sms_from or None,
        email_address=hub.sendgrid_from_email or None,
        telegram_bot=hub.telegram_bot_username or None,
        messenger_page=hub.meta_page_username or hub.meta_page_id or None,
        line_basic_id=hub.line_basic_id or None,
    )
    try:
        return invitation_text(link, addresses, business=hub.display_name)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def webchat_return_url(customer_id: str, conversation_id: str, created_by: str) -> str:
    """A fresh single-use web chat link for this customer, without sending it anywhere."""
    return _webchat_url(_allocate(customer_id, conversation_id, LinkTarget.WEBCHAT, created_by))
