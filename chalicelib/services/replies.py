"""Agents reply on any channel: `POST /v1/conversations/{id}/messages`.

The reply goes out through the one outbound path (services/outbound.py): on the channel asked
for, else the one the customer last wrote from; never on a channel the customer opted out of
(422 `opted_out`); from the business address the customer wrote to. The sent message joins the
thread with the provider's id, so status callbacks find it, and the CRM hears `message.created`.

An `Idempotency-Key` makes the request safe to retry (services/idempotency.py): of two concurrent
requests with one key exactly one sends; once the provider has answered, the message is
checkpointed on the key, so if recording it fails the answer is 503 and a retry with the same key
finishes the work without sending again. If the provider could not be reached nothing was sent
and the same key runs again. Every other outcome is replayed to any repeat for 24 hours.

AWS requests for a reply with a key: PutItem (claim), 3 GetItem (conversation, customer, agent),
then the outbound path's (services/outbound.py), then UpdateItem (complete). A web chat reply
adds one SQS SendMessage (the offline-fallback check, services/offline_fallback.py).
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.api.reply_models import ReplyRequest
from chalicelib.domain.agents import Agent
from chalicelib.domain.customers import Controller, Conversation, Customer
from chalicelib.domain.messages import Channel, Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose, Sender, SenderType
from chalicelib.domain.replies import RefusalKind, Refused
from chalicelib.domain.timers import WebchatReplySent
from chalicelib.observability import logger
from chalicelib.services import idempotency, outbound, sla, timers
from chalicelib.services.errors import SentNotRecorded, Unavailable, is_storage_failure
from chalicelib.services.idempotency import Claim, Done
from chalicelib.store import agents as agent_store


def send_reply(
    conversation_id: str, request: ReplyRequest, idempotency_key: str | None = None, *, now: datetime | None = None
) -> Done[Message]:
    """Send an agent's reply: the message the provider saw (accepted, or refused for good and
    stored as failed). Raises Refused (nothing sent), ProviderUnavailable and Unavailable (nothing
    sent: retry), SentNotRecorded (sent: retry with the same key to finish)."""
    now = now or utcnow()
    return idempotency.run(
        idempotency_key,
        conversation_id,
        request.fingerprint_data(),
        lambda claim: _run(conversation_id, request, now, claim),
        encode=lambda message: message.model_dump(mode="json"),
        decode=Message.model_validate,
        resume=_resume,
        now=now,
    )


def _run(conversation_id: str, request: ReplyRequest, now: datetime, claim: Claim | None) -> Message:
    try:
        conversation, customer, agent = _load(conversation_id, request)
        delivered = outbound.send(
            OutboundMessage(
                purpose=Purpose.AGENT_REPLY if agent else Purpose.BOT_REPLY,
                text=request.text,
                channel=request.channel,
                media_urls=tuple(request.media_urls),
                subject=request.subject,
                sender=Sender(SenderType.AGENT, agent.id) if agent else Sender(SenderType.BOT, request.bot_id),
            ),
            customer,
            conversation,
            agent=agent,
            claim=claim,
            now=now,
        )
    except SentNotRecorded as exc:
        hint = "retry with the same Idempotency-Key to finish" if claim else "do not resend it"
        raise SentNotRecorded(f"{exc}; {hint}") from exc
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("reply could not be prepared", extra={"error": type(exc).__name__})
        raise Unavailable("the hub's storage is unavailable; nothing was sent; retry") from exc
    if agent is not None and not delivered.rejected:
        sla.agent_replied(conversation, delivered.message.created_at)  # a bot's answer never counts
    if delivered.message.channel is Channel.WEBCHAT and agent is not None:
        _follow_visitor(delivered.message, agent)
    return delivered.message


def _resume(message: Message) -> Message:
    """A repeat of a request whose provider call succeeded but whose recording did not finish."""
    try:
        outbound.finish(message, agent_store.get_agent(message.agent_id or ""))
    except Exception as exc:
        if not is_storage_failure(exc) and not isinstance(exc, LookupError | SentNotRecorded):
            raise
        logger.error("finishing a sent reply failed", extra={"message_id": message.id, "error": str(exc)})
        raise SentNotRecorded(
            f"the reply {message.id} was sent but could not be recorded yet; retry to finish"
        ) from exc
    return message


def _load(conversation_id: str, request: ReplyRequest) -> tuple[Conversation, Customer, Agent | None]:
    """The conversation, its customer, and the agent replying (None for a bot, which may answer
    only while it controls the conversation)."""
    conversation, customer = outbound.addressee(conversation_id)
    if request.bot_id is not None:
        control = conversation.control
        if control is None or control.controller != Controller.named(request.bot_id):
            raise Refused(
                RefusalKind.UNPROCESSABLE,
                "not_in_control",
                f"bot '{request.bot_id}' does not control this conversation; it answers only while it does",
            )
        return conversation, customer, None
    agent = agent_store.get_agent(str(request.agent_id))
    if agent is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"no agent '{request.agent_id}'")
    return conversation, customer, agent


def _follow_visitor(message: Message, agent: Agent) -> None:
    """A web chat reply: the offline fallback decides (through the timer queue) whether the
    visitor is gone and should get it on another channel. Best effort: the reply stands."""
    try:
        timers.schedule_in(
            WebchatReplySent(
                message_id=message.id,
                conversation_id=message.conversation_id,
                customer_id=message.customer_id,
                agent_name=agent.name,
            ),
            0,
        )
    except Exception as exc:
        logger.warning("offline fallback not scheduled", extra={"message_id": message.id, "error": type(exc).__name__})
