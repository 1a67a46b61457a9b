"""Agents reply on any channel: `POST /v1/conversations/{id}/messages`.

The reply goes out on the channel asked for, else the one the customer last wrote from; SMS and
WhatsApp through Twilio, email through SendGrid (threaded under the customer's latest email). The
sent message joins the thread with the provider's id, so status callbacks find it, and the CRM
hears `message.created`.

An `Idempotency-Key` makes the request safe to retry. The key is claimed with a conditional put
before anything is read or sent, so of two concurrent requests with one key exactly one sends
(the other gets 409). Once the provider has answered, the message to store is checkpointed on the
claim: if storing or announcing it fails, the answer is 503 and a retry with the same key finishes
the work without sending again. If the provider could not be reached nothing was sent, the claim
is released and the same key runs again. Every other outcome is kept for 24 hours and replayed
(same status, same body) to any repeat; the same key with another body is a 422.

AWS requests for a reply with a key: PutItem (claim), 3 GetItem (conversation, customer, agent),
a Query for the customer's latest email (email only), UpdateItem (checkpoint), TransactWriteItems
(message + provider-id lookup + conversation), SQS SendMessageBatch (event), UpdateItem (complete).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from chalicelib import metrics
from chalicelib.api.models import agent_view, conversation_view, customer_view, message_view
from chalicelib.api.reply_models import ReplyRequest, validation_problem
from chalicelib.domain.agents import Agent
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.ids import id_datetime, new_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Media, Message, utcnow
from chalicelib.domain.replies import (
    InboundEmail,
    ProviderRejected,
    ProviderUnavailable,
    Refused,
    ReplyPlan,
    SentMessage,
    check_idempotency_key,
    choose_channel,
    email_text,
    plan_reply,
    request_fingerprint,
    whatsapp_address,
)
from chalicelib.observability import logger
from chalicelib.services import delivery_status
from chalicelib.store import agents as agent_store
from chalicelib.store import customers as customer_store
from chalicelib.store import idempotency, thread
from chalicelib.store.idempotency import IdempotencyRecord
from chalicelib.store.table import TransactionCancelled

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
RETRY_AFTER = {"Retry-After": "5"}
PERSIST_ATTEMPTS = 4


# --- Settings (to move into chalicelib/config.py) ------------------------------------------------


@dataclass(frozen=True)
class ReplySettings:
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_sms_from: str = ""
    twilio_whatsapp_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_base_url: str = "https://api.twilio.com"
    sendgrid_api_key: str = ""
    sendgrid_from_email: str = ""
    sendgrid_from_name: str = ""
    sendgrid_api_base_url: str = "https://api.sendgrid.com"
    public_base_url: str = "http://127.0.0.1:8000"
    provider_timeout_seconds: float = 10.0

    @property
    def status_callback_url(self) -> str:
        return self.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH

    def missing_for(self, channel: Channel, provider: str | None = None) -> list[str]:
        """The settings a send on `channel` (through `provider`) needs that are not set."""
        if channel is Channel.WEBCHAT:
            return []  # the hub's own channel: nothing leaves the hub
        from chalicelib.channels import registry

        if provider and registry.has_sender(provider):
            return list(registry.sender(provider).missing_settings(channel.value))
        if channel is Channel.EMAIL:
            from chalicelib.config import secret

            needed = {
                "SENDGRID_API_KEY": self.sendgrid_api_key,
                "SENDGRID_FROM_EMAIL": self.sendgrid_from_email,
                # every email carries a one-click unsubscribe link signed with it
                "UNSUBSCRIBE_SECRET": secret("unsubscribe_secret"),
            }
            return [name for name, value in needed.items() if not value]
        needed = {"TWILIO_ACCOUNT_SID": self.twilio_account_sid, "TWILIO_AUTH_TOKEN": self.twilio_auth_token}
        missing = [name for name, value in needed.items() if not value]
        sender = self.twilio_sms_from if channel is Channel.SMS else self.twilio_whatsapp_from
        if not self.twilio_messaging_service_sid and not sender:
            name = "TWILIO_SMS_FROM" if channel is Channel.SMS else "TWILIO_WHATSAPP_FROM"
            missing.append(f"{name} (or TWILIO_MESSAGING_SERVICE_SID)")
        return missing


def reply_settings() -> ReplySettings:
    """Read on every reply (cheap), so a changed environment applies at once."""
    from chalicelib.config import secret, settings

    def env(name: str, default: str = "") -> str:
        return os.environ.get(name, "").strip() or default

    try:
        timeout = float(env("PROVIDER_TIMEOUT_SECONDS", "10"))
    except ValueError:
        timeout = 10.0
    return ReplySettings(
        twilio_account_sid=env("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=secret("twilio_auth_token"),
        twilio_sms_from=env("TWILIO_SMS_FROM"),
        twilio_whatsapp_from=env("TWILIO_WHATSAPP_FROM"),
        twilio_messaging_service_sid=env("TWILIO_MESSAGING_SERVICE_SID"),
        twilio_api_base_url=env("TWILIO_API_BASE_URL", "https://api.twilio.com"),
        sendgrid_api_key=secret("sendgrid_api_key"),
        sendgrid_from_email=env("SENDGRID_FROM_EMAIL"),
        sendgrid_from_name=env("SENDGRID_FROM_NAME"),
        sendgrid_api_base_url=env("SENDGRID_API_BASE_URL", "https://api.sendgrid.com"),
        public_base_url=settings().public_base_url,
        provider_timeout_seconds=timeout if 0 < timeout <= 25 else 10.0,
    )


# --- Outcome -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyOutcome:
    """What the API answers: `body` is JSON (the message, or `{"error": {"code", "message"}}`)."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    message: Message | None = None

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> ReplyOutcome:
    return ReplyOutcome(status, {"error": {"code": code, "message": message}}, headers or {})


def _unavailable(message: str) -> ReplyOutcome:
    return _error(503, "temporarily_unavailable", message, dict(RETRY_AFTER))


def _answer(status: int, message: Message, headers: dict[str, str] | None = None) -> ReplyOutcome:
    """The answer for a message the provider saw: 201 with it, or 502 when the provider refused it."""
    if status == 201:
        return ReplyOutcome(201, message_view(message), headers or {}, message)
    text = (
        f"{message.provider} refused the message (error {message.error_code}: {message.error_message}); "
        f"it is stored as {message.id} with status failed"
    )
    return ReplyOutcome(502, {"error": {"code": "provider_error", "message": text}}, headers or {}, message)


# --- The use case ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    key: str
    token: str


@dataclass(frozen=True)
class _Context:
    conversation: Conversation
    customer: Customer
    agent: Agent


def send_reply(
    conversation_id: str, payload: Any, idempotency_key: str | None = None, *, now: datetime | None = None
) -> ReplyOutcome:
    """Send an agent's reply; never raises for anything a client can send or a provider can answer."""
    now = now or utcnow()
    try:
        request = ReplyRequest.model_validate(payload)
    except ValidationError as exc:
        return _error(400, "invalid_request", validation_problem(exc))
    if idempotency_key is None:
        return _run(conversation_id, request, now, None)
    try:
        key = check_idempotency_key(idempotency_key)
    except Refused as refusal:
        return _error(refusal.status, refusal.code, refusal.message)
    fingerprint = request_fingerprint(conversation_id, request.fingerprint_data())
    claim = _Claim(key, uuid.uuid4().hex)
    try:
        existing = idempotency.claim(key, fingerprint, claim.token, now)
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        logger.warning("idempotency claim failed", extra={"error": type(exc).__name__})
        return _unavailable("the hub's storage is unavailable; nothing was sent; retry with the same Idempotency-Key")
    if existing is not None:
        return _repeat(existing, fingerprint)
    return _run(conversation_id, request, now, claim)


def _repeat(record: IdempotencyRecord, fingerprint: str) -> ReplyOutcome:
    """A request whose key is already held or used."""
    if record.fingerprint != fingerprint:
        return _error(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; send a new key for a new reply",
        )
    if record.state == idempotency.IN_PROGRESS:
        return _error(409, "idempotency_key_in_progress", "a request with this Idempotency-Key is in progress")
    replayed = {"Idempotent-Replayed": "true"}
    if record.message is not None and record.status_code is not None:
        message = Message.model_validate_json(record.message)
        if record.state == idempotency.SENT:
            return _finish(record, message)
        return _answer(record.status_code, message, replayed)
    body = json.loads(record.response_body or "{}")
    return ReplyOutcome(int(record.status_code or 500), body, replayed)


def _run(conversation_id: str, request: ReplyRequest, now: datetime, claim: _Claim | None) -> ReplyOutcome:
    config = reply_settings()
    try:
        context = _load(conversation_id, request.agent_id)
        channel = choose_channel(request.channel, context.customer)
        latest = _latest_email(context) if channel is Channel.EMAIL else None
        plan = plan_reply(
            channel=channel,
            customer=context.customer,
            body=request.text,
            media_urls=request.media_urls,
            subject=request.subject,
            now=now,
            latest_email=latest,
        )
        missing = config.missing_for(channel, plan.provider)
        if missing:
            raise Refused(
                503, "channel_not_configured", f"{channel.value} replies are not configured: set {', '.join(missing)}"
            )
    except Refused as refusal:
        outcome = _error(refusal.status, refusal.code, refusal.message)
        _settle_refusal(claim, outcome)
        return outcome
    except Exception as exc:
        _release(claim)
        if not _is_storage_failure(exc):
            raise
        logger.warning("reply could not be prepared", extra={"error": type(exc).__name__})
        return _unavailable("the hub's storage is unavailable; nothing was sent; retry")

    message_id = new_id("msg")
    try:
        sent = _send(plan, config, message_id, context.customer, claim.key if claim else None)
    except ProviderUnavailable as exc:
        _release(claim)
        logger.warning("provider unavailable", extra={"provider": exc.provider, "reason": exc.reason})
        return _unavailable(f"{exc.provider} could not be reached ({exc.reason}); nothing was sent; retry")
    except ProviderRejected as exc:
        message = _failed_message(message_id, context, plan, request, config, exc)
        status = 502
    else:
        message = _sent_message(message_id, context, plan, request, sent)
        status = 201
    logger.info(
        "reply sent" if status == 201 else "reply refused by the provider",
        extra={
            "message_id": message.id,
            "channel": message.channel.value,
            "provider": message.provider,
            "status": message.status.value,
            "error_code": message.error_code,
        },
    )
    # The provider has the message now: from here on the claim is never released.
    message_json = message.model_dump_json()
    try:
        if claim is not None:
            idempotency.checkpoint(claim.key, claim.token, status, message_json)
        _persist(message)
        _announce(message, _counted(context.conversation, message), context)
        if claim is not None:
            idempotency.complete(claim.key, claim.token, status)
        if message.channel is Channel.WEBCHAT:
            from chalicelib.services.offline_fallback import notify_if_away

            notify_if_away(message, context.customer, context.agent.name)
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        logger.error(
            "reply sent but not recorded",
            extra={"message_id": message.id, "provider_message_id": message.provider_message_id, "error": str(exc)},
        )
        hint = "retry with the same Idempotency-Key to finish" if claim else "do not resend it"
        return _unavailable(
            f"the reply was handed to {message.provider} as {message.id} but could not be recorded yet; {hint}"
        )
    return _answer(status, message)


def _finish(record: IdempotencyRecord, message: Message) -> ReplyOutcome:
    """A repeat of a request whose provider call succeeded but whose recording did not finish."""
    try:
        _persist(message)
        conversation = thread.get_conversation(message.conversation_id)
        customer = customer_store.get_customer(message.customer_id)
        agent = agent_store.get_agent(message.agent_id or "")
        if conversation is None or customer is None or agent is None:
            raise LookupError("the conversation, customer or agent of a sent reply is gone")
        _announce(message, conversation, _Context(conversation, customer, agent))
        idempotency.complete(record.key, record.token, int(record.status_code or 201))
    except Exception as exc:
        if not _is_storage_failure(exc) and not isinstance(exc, LookupError):
            raise
        logger.error("finishing a sent reply failed", extra={"message_id": message.id, "error": str(exc)})
        return _unavailable(f"the reply {message.id} was sent but could not be recorded yet; retry to finish")
    return _answer(int(record.status_code or 201), message, {"Idempotent-Replayed": "true"})


# --- Steps -----------------------------------------------------------------------------------------------


def _load(conversation_id: str, agent_id: str) -> _Context:
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise Refused(404, "not_found", f"no conversation '{conversation_id}'")
    customer = customer_store.get_customer(conversation.customer_id)
    if customer is None:
        raise Refused(404, "not_found", f"the customer of conversation '{conversation_id}' no longer exists")
    agent = agent_store.get_agent(agent_id)
    if agent is None:
        raise Refused(404, "not_found", f"no agent '{agent_id}'")
    return _Context(conversation, customer, agent)


def _latest_email(context: _Context) -> InboundEmail | None:
    if Channel.EMAIL.value not in context.customer.last_inbound_by_channel:
        return None  # the customer never emailed: no query needed
    latest = idempotency.latest_inbound_email(context.conversation.id)
    return InboundEmail(subject=latest.subject, threading=latest.email) if latest else None


@metrics.counts_sends
def _send(
    plan: ReplyPlan, config: ReplySettings, message_id: str, customer: Customer, idempotency_key: str | None = None
) -> SentMessage:
    from chalicelib.channels import registry

    if registry.has_sender(plan.provider):
        return _send_chat_app(plan, config, message_id, customer, idempotency_key)
    if plan.channel is Channel.WEBCHAT:
        # No provider: storing the message is sending it (the visitor's page polls the thread).
        # "sent" until a poll hands it to the page, which makes it "delivered" (services/webchat.py).
        return SentMessage(
            provider=plan.provider,
            provider_message_id=None,
            status=DeliveryStatus.SENT,
            sender_address=None,
            recipient_address=plan.recipient,
        )
    if plan.channel is Channel.EMAIL:
        from chalicelib.channels import sendgrid

        assert plan.subject is not None
        from chalicelib.services.consent import unsubscribe_footer, unsubscribe_headers

        return sendgrid.send_email(
            api_key=config.sendgrid_api_key,
            from_email=config.sendgrid_from_email,
            from_name=config.sendgrid_from_name or None,
            to_email=plan.recipient,
            to_name=customer.name or customer.provider_names.get(Channel.EMAIL.value),
            subject=plan.subject,
            text=email_text(plan.body, plan.media_urls) + unsubscribe_footer(customer.id),
            in_reply_to=plan.email.in_reply_to if plan.email else None,
            references=plan.email.references if plan.email else None,
            custom_args={sendgrid.HUB_MESSAGE_ID_ARG: message_id},
            headers=unsubscribe_headers(customer.id),
            api_base_url=config.sendgrid_api_base_url,
            timeout=config.provider_timeout_seconds,
        )
    from chalicelib.channels import twilio

    service = config.twilio_messaging_service_sid
    return twilio.send_message(
        account_sid=config.twilio_account_sid,
        auth_token=config.twilio_auth_token,
        to=plan.recipient,
        body=plan.body,
        media_urls=plan.media_urls,
        from_=None if service else _twilio_sender(plan.channel, config),
        messaging_service_sid=service or None,
        status_callback=config.status_callback_url,
        api_base_url=config.twilio_api_base_url,
        timeout=config.provider_timeout_seconds,
    )


def _send_chat_app(
    plan: ReplyPlan, config: ReplySettings, message_id: str, customer: Customer, idempotency_key: str | None
) -> SentMessage:
    from chalicelib.channels import registry
    from chalicelib.channels.base import Outgoing
    from chalicelib.store.customers import take_reply_token

    # A reply token is single use: claim it first, so two replies never both try it.
    token = plan.reply_token if plan.reply_token and take_reply_token(customer.id, plan.reply_token) else None
    outgoing = Outgoing(
        channel=plan.channel.value,
        recipient=plan.recipient,
        body=plan.body,
        hub_message_id=message_id,
        media_urls=tuple(plan.media_urls),
        timeout=config.provider_timeout_seconds,
        message_tag=plan.message_tag,
        reply_token=token,
        retry_key=f"{customer.id}:{idempotency_key}" if idempotency_key else None,
    )
    return registry.sender(plan.provider).send(outgoing)


def _twilio_sender(channel: Channel, config: ReplySettings) -> str:
    if channel is Channel.WHATSAPP:
        return whatsapp_address(config.twilio_whatsapp_from)
    return config.twilio_sms_from


def _base_message(message_id: str, context: _Context, plan: ReplyPlan, request: ReplyRequest) -> dict[str, Any]:
    return {
        "id": message_id,
        "conversation_id": context.conversation.id,
        "customer_id": context.customer.id,
        "channel": plan.channel,
        "direction": Direction.OUTBOUND,
        "body": plan.body,
        "subject": plan.subject,
        "created_at": id_datetime(message_id),
        "provider": plan.provider,
        "recipient_address": plan.recipient,
        "media": [Media(url=url) for url in plan.media_urls],
        "email": plan.email,
        "agent_id": request.agent_id,
    }


def _sent_message(
    message_id: str, context: _Context, plan: ReplyPlan, request: ReplyRequest, sent: SentMessage
) -> Message:
    return Message(
        **_base_message(message_id, context, plan, request),
        status=sent.status,
        provider_message_id=sent.provider_message_id,
        sender_address=sent.sender_address,
    )


def _failed_message(
    message_id: str,
    context: _Context,
    plan: ReplyPlan,
    request: ReplyRequest,
    config: ReplySettings,
    exc: ProviderRejected,
) -> Message:
    if plan.channel is Channel.EMAIL:
        sender: str | None = config.sendgrid_from_email
    elif plan.provider != "twilio":
        sender = None
    else:
        sender = None if config.twilio_messaging_service_sid else _twilio_sender(plan.channel, config)
    return Message(
        **_base_message(message_id, context, plan, request),
        status=DeliveryStatus.FAILED,
        sender_address=sender,
        error_code=exc.code,
        error_message=exc.message,
        status_updated_at=id_datetime(message_id),
    )


def _persist(message: Message) -> None:
    """Add the message to the thread; a message already stored (a retry) is left as it is. Then
    apply any status the provider reported before the message was recorded."""
    for attempt in range(PERSIST_ATTEMPTS):
        try:
            if message.provider_message_id:
                thread.record_outbound(message)
            else:
                idempotency.record_outbound_without_provider_id(message)
            break
        except TransactionCancelled as exc:
            if exc.failed_at(0) or exc.failed_at(1):
                break  # stored by an earlier attempt
            if not exc.conflicted or attempt == PERSIST_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0, 0.02 * 2**attempt))
    if message.provider_message_id:
        delivery_status.catch_up(str(message.provider), message.provider_message_id)


def _counted(conversation: Conversation, message: Message) -> Conversation:
    """The conversation as the thread write left it (saves reading it again)."""
    channels = list(conversation.channels)
    if message.channel not in channels:
        channels.append(message.channel)
    return conversation.model_copy(
        update={
            "message_count": conversation.message_count + 1,
            "outbound_count": conversation.outbound_count + 1,
            "channels": channels,
            "last_message_id": message.id,
            "last_message_at": message.created_at,
            "updated_at": message.created_at,
        }
    )


def _announce(message: Message, conversation: Conversation, context: _Context) -> None:
    from chalicelib.services import events

    data = {
        "customer": customer_view(context.customer),
        "conversation": conversation_view(conversation),
        "message": message_view(message),
        "agent": agent_view(context.agent),
    }
    events.emit_many([("message.created", data, message.id)])


def _settle_refusal(claim: _Claim | None, outcome: ReplyOutcome) -> None:
    """A refusal after the claim: kept for repeats, unless it is a server-side 5xx."""
    if claim is None:
        return
    if outcome.status_code >= 500:
        _release(claim)
        return
    try:
        idempotency.complete(claim.key, claim.token, outcome.status_code, response_body=json.dumps(outcome.body))
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        _release(claim)


def _release(claim: _Claim | None) -> None:
    if claim is None:
        return
    try:
        idempotency.release(claim.key, claim.token)
    except Exception as exc:  # the claim then stays until it expires; the key answers 409 meanwhile
        logger.error("idempotency claim not released", extra={"error": type(exc).__name__})


def _is_storage_failure(exc: Exception) -> bool:
    """AWS (DynamoDB, SQS) failures the caller may retry, as opposed to bugs."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.services.events import EventQueueUnavailable
    from chalicelib.store.table import ConditionFailed

    return isinstance(exc, BotoCoreError | ClientError | EventQueueUnavailable | ConditionFailed | TransactionCancelled)
