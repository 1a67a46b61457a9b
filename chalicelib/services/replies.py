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
from typing import Any

from pydantic import ValidationError

from chalicelib.api.models import message_view
from chalicelib.api.reply_models import ReplyRequest, validation_problem
from chalicelib.domain.agents import Agent
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.messages import Channel, Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose, Sender, SenderType
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.domain.timers import WebchatReplySent
from chalicelib.observability import logger
from chalicelib.services import idempotency, outbound, timers
from chalicelib.services.errors import SentNotRecorded, is_storage_failure
from chalicelib.services.idempotency import Claim, Outcome, error, refusal, sent_not_recorded, unreachable
from chalicelib.store import agents as agent_store
from chalicelib.store import customers as customer_store
from chalicelib.store import thread
from chalicelib.store.idempotency import IdempotencyRecord


def send_reply(
    conversation_id: str, payload: Any, idempotency_key: str | None = None, *, now: datetime | None = None
) -> Outcome:
    """Send an agent's reply; never raises for anything a client can send or a provider can answer."""
    now = now or utcnow()
    try:
        request = ReplyRequest.model_validate(payload)
    except ValidationError as exc:
        return error(400, "invalid_request", validation_problem(exc))
    return idempotency.run(
        idempotency_key,
        conversation_id,
        request.fingerprint_data(),
        lambda claim: _run(conversation_id, request, now, claim),
        resume=_resume,
        now=now,
    )


def answer(status: int, message: Message, headers: dict[str, str] | None = None) -> Outcome:
    """The answer for a message the provider saw: 201 with it, or 502 when the provider refused it."""
    if status == 201:
        return Outcome(201, message_view(message), headers or {})
    text = (
        f"{message.provider} refused the message (error {message.error_code}: {message.error_message}); "
        f"it is stored as {message.id} with status failed"
    )
    return Outcome(502, {"error": {"code": "provider_error", "message": text}}, headers or {})


def _run(conversation_id: str, request: ReplyRequest, now: datetime, claim: Claim | None) -> Outcome:
    try:
        conversation, customer, agent = _load(conversation_id, request.agent_id)
        delivered = outbound.send(
            OutboundMessage(
                purpose=Purpose.AGENT_REPLY,
                text=request.text,
                channel=request.channel,
                media_urls=tuple(request.media_urls),
                subject=request.subject,
                sender=Sender(SenderType.AGENT, agent.id),
            ),
            customer,
            conversation,
            agent=agent,
            claim=claim,
            now=now,
        )
    except Refused as refused:
        return refusal(refused)
    except ProviderUnavailable as exc:
        logger.warning("provider unavailable", extra={"provider": exc.provider, "reason": exc.reason})
        return unreachable(exc)
    except SentNotRecorded as exc:
        return sent_not_recorded(
            exc, claim, "retry with the same Idempotency-Key to finish" if claim else "do not resend it"
        )
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("reply could not be prepared", extra={"error": type(exc).__name__})
        return error(503, "temporarily_unavailable", "the hub's storage is unavailable; nothing was sent; retry")
    if delivered.message.channel is Channel.WEBCHAT:
        _follow_visitor(delivered.message, agent)
    return answer(502 if delivered.rejected else 201, delivered.message)


def _resume(record: IdempotencyRecord) -> Outcome:
    """A repeat of a request whose provider call succeeded but whose recording did not finish."""
    message = Message.model_validate_json(record.message or "{}")
    try:
        agent = agent_store.get_agent(message.agent_id or "")
        outbound.finish(message, agent)
    except Exception as exc:
        if not is_storage_failure(exc) and not isinstance(exc, LookupError | SentNotRecorded):
            raise
        logger.error("finishing a sent reply failed", extra={"message_id": message.id, "error": str(exc)})
        outcome = error(
            503,
            "temporarily_unavailable",
            f"the reply {message.id} was sent but could not be recorded yet; retry to finish",
        )
        return Outcome(outcome.status_code, outcome.body, outcome.headers, keep_claim=True)
    return idempotency.finish(record, answer(int(record.status_code or 201), message))


def _load(conversation_id: str, agent_id: str) -> tuple[Conversation, Customer, Agent]:
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise Refused(404, "not_found", f"no conversation '{conversation_id}'")
    customer = customer_store.get_customer(conversation.customer_id)
    if customer is None:
        raise Refused(404, "not_found", f"the customer of conversation '{conversation_id}' no longer exists")
    agent = agent_store.get_agent(agent_id)
    if agent is None:
        raise Refused(404, "not_found", f"no agent '{agent_id}'")
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
