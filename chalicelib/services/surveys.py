"""Satisfaction surveys: asked after a resolution on the customer's own channel, answered there
(or on a small page for email), counted for analytics and sent to the CRM.

- `schedule(conversation_id, cycle)`: routing.resolve calls it; a `SurveyDue` timer fires after
  the configured delay (the timer queue; services never call each other in a circle).
- `send_due(timer)`: the rules of domain/surveys.py, a per-customer cooldown marker, the survey
  stored on the conversation (its own version), the question through the one outbound path (a
  WhatsApp list, quick replies, an inline keyboard, LINE quick replies, text for SMS, a signed
  link for email), then `csat.requested`. A retried timer finds the survey stored and sends
  nothing twice.
- `answer_to(conversation, message)` / `record(...)`: routing.handle_inbound asks first whether a
  customer's message answers the pending survey (its `message.created` then says
  `survey_answer`, so it opens no cycle); a rating (which may change until the comment) or the
  comment is stored conditionally and `csat.submitted` goes out. A redelivered message is
  recognised by its id and changes nothing.
- Words: the question, the buttons' labels and the thanks speak the customer's `language`
  attribute as it was when the survey was asked (kept on the survey, so the thanks matches the
  question), else the configured default language (SurveyConfig.text; built-in en, es, fr, de, pt).
- The email page: `page(token)` and `submit(token, rating, comment)`, behind a signed token that
  expires with the survey and is single use (the page records rating and comment at once).

AWS requests for a survey sent: GetItem (cycle), GetItem conversation + customer, PutItem (the
cooldown marker), UpdateItem (the survey), then the outbound path's, then SQS (csat.requested).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from chalicelib.api.models import conversation_view, customer_view
from chalicelib.config import secret, settings
from chalicelib.domain.consent import match_keyword
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.messages import Channel, Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose, Template
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.domain.surveys import (
    Answer,
    Survey,
    SurveyConfig,
    answer_of,
    answered,
    choices,
    language_of,
    new_survey,
    refusal,
    survey_id,
)
from chalicelib.domain.timers import SurveyDue
from chalicelib.observability import logger
from chalicelib.services import analytics, events, outbound, timers
from chalicelib.services.errors import Conflict, InvalidRequest, NotFound, SentNotRecorded
from chalicelib.services.routing_config import routing_config
from chalicelib.store import conversation_state, thread
from chalicelib.store import customers as customer_store
from chalicelib.store import surveys as store

TEXT_CHANNELS = (Channel.SMS.value,)  # no buttons: the question asks for a digit
ATTEMPTS = 3


def config() -> SurveyConfig:
    return routing_config().surveys


# --- Asking ------------------------------------------------------------------------------------------


def schedule(conversation_id: str) -> None:
    """After a resolution: the survey timer for the cycle just resolved, when surveys are on and
    an agent handled it (GetItem of the cycle, SendMessage; the rules are checked again when it fires)."""
    if not config().enabled:
        return
    cycle = analytics.current_cycle(conversation_id)
    if cycle is None or cycle.open or cycle.resolved_by != "agent":
        return
    timers.schedule_in(SurveyDue(conversation_id=conversation_id, cycle_id=cycle.cycle_id), config().delay_seconds)


def send_due(timer: SurveyDue) -> Survey | None:
    cycle = analytics.current_cycle(timer.conversation_id)
    now = utcnow()
    if cycle is None or cycle.cycle_id != timer.cycle_id:
        return None  # the customer wrote again meanwhile: a new cycle, no survey for the old one
    conversation = thread.get_conversation(timer.conversation_id)
    customer = customer_store.get_customer(cycle.customer_id)
    if conversation is None or customer is None:
        return None
    if conversation.survey is not None and conversation.survey.id == survey_id(cycle.cycle_id):
        return conversation.survey  # asked already (a retried timer)
    why = refusal(cycle, config(), store.last_survey_at(customer.id), now)
    if why:
        logger.info("no survey", extra={"conversation_id": conversation.id, "reason": why})
        return None
    channel = cycle.last_channel
    survey = new_survey(cycle, channel, now, config(), language_of(customer.attributes))
    if not store.claim_cooldown(customer.id, survey.id, now, timedelta(hours=config().cooldown_hours)):
        return None
    try:
        conversation = _save(conversation, survey)
    except conversation_state.StateChanged:
        return None
    if not _ask(survey, customer, conversation):
        return None
    _announce("csat.requested", survey, conversation, customer, survey.id)
    return survey


def _text(name: str, customer: Customer, survey: Survey | None = None) -> str:
    """A text in the language the survey was asked in (else the customer's language now), falling
    back to the configured default language (SurveyConfig.text); "" is not sent."""
    language = (survey.language if survey else None) or language_of(customer.attributes)
    return config().text(name, language)


def _ask(survey: Survey, customer: Customer, conversation: Conversation) -> bool:
    channel = survey.channel
    if channel == Channel.EMAIL.value:
        request = OutboundMessage(
            purpose=Purpose.SURVEY,
            text=_text("question_email", customer, survey).replace("{link}", page_link(survey, conversation.id)),
            channel=channel,
            subject=_text("subject", customer, survey) or "How did we do?",
        )
    elif channel == Channel.WHATSAPP.value and customer.whatsapp_provider == "twilio" and config().whatsapp_content_sid:
        # Through Twilio a list needs approved content: the configured Content SID, in or out of the window.
        return _ask_with_template(customer, conversation, channel, survey)
    elif channel in TEXT_CHANNELS or (channel == Channel.WHATSAPP.value and customer.whatsapp_provider == "twilio"):
        request = OutboundMessage(purpose=Purpose.SURVEY, text=_text("question_sms", customer, survey), channel=channel)
    else:
        # The buttons speak the question's language; a tap on any language's label still answers.
        request = OutboundMessage(
            purpose=Purpose.SURVEY,
            text=_text("question", customer, survey),
            channel=channel,
            choices=choices(config(), survey.language),
        )
    try:
        outbound.send(request, customer, conversation)
        return True
    except Refused as exc:
        if exc.code.endswith("_window_closed") and channel == Channel.WHATSAPP.value:
            return _ask_with_template(customer, conversation, channel, survey)
        logger.info("survey not sent", extra={"conversation_id": conversation.id, "reason": exc.code})
    except (ProviderUnavailable, SentNotRecorded) as exc:
        logger.warning("survey not sent", extra={"conversation_id": conversation.id, "reason": str(exc)[:200]})
    return False


def _ask_with_template(customer: Customer, conversation: Conversation, channel: str, survey: Survey) -> bool:
    """Outside WhatsApp's window only an approved template may go; without one, no survey."""
    settings_ = config()
    if not (settings_.whatsapp_template or settings_.whatsapp_content_sid):
        logger.info("survey not sent: WhatsApp window closed and no survey template configured")
        return False
    template = Template(
        preview=_text("question_sms", customer, survey),
        meta_name=settings_.whatsapp_template,
        content_sid=settings_.whatsapp_content_sid,
    )
    try:
        outbound.send(
            OutboundMessage(
                purpose=Purpose.SURVEY,
                text=_text("question_sms", customer, survey),
                channel=channel,
                template=template,
            ),
            customer,
            conversation,
        )
        return True
    except (Refused, ProviderUnavailable, SentNotRecorded) as exc:
        logger.info("survey template not sent", extra={"reason": str(exc)[:200]})
        return False


def _save(conversation: Conversation, survey: Survey) -> Conversation:
    expected = conversation.survey.version if conversation.survey else 0
    stored = survey.model_copy(update={"version": expected + 1}).model_dump(mode="json")
    return conversation_state.set_state(conversation.id, "survey", stored, expected)


# --- Answers ---------------------------------------------------------------------------------------------


def answer_to(conversation: Conversation, message: Message) -> Answer | None:
    """What a customer's message does to the pending survey (nothing read: the survey is on the
    conversation already in hand)."""
    survey = conversation.survey
    if survey is None:
        return None
    if message.id in survey.answered_by:
        kind = "comment" if survey.status == "done" and survey.comment else "rating"
        return (kind, survey.rating, survey.comment)  # redelivered: the same answer, applied already
    if getattr(conversation.status, "value", conversation.status) != "resolved":
        # A new cycle began (an ordinary message reopened the conversation): from then on a digit
        # answers the agent, not the survey (the email page still takes the rating until it expires).
        return None
    if match_keyword(message.body or "") is not None:
        return None  # STOP, START, HELP: a consent keyword (handled as such), never a rating or comment
    return answer_of(survey, message.body, message.id, message.created_at, config())


def record(conversation: Conversation, customer: Customer, message: Message, answer: Answer) -> Survey | None:
    """Store the answer (conditional on the survey's version) and tell the CRM; a thank-you goes
    out after a first rating or the comment."""
    for _ in range(ATTEMPTS):
        survey = conversation.survey
        if survey is None:
            return None
        if message.id in survey.answered_by:
            # Redelivered (the first attempt may have stopped before its event went out): the
            # survey's state again, under the same key, so the event exists once.
            _submitted(survey, conversation, customer)
            return survey
        after = answered(survey, answer, message.id, message.created_at)
        try:
            conversation = _save(conversation, after)
        except conversation_state.StateChanged:
            fresh = thread.get_conversation(conversation.id)
            if fresh is None:
                return None
            conversation = fresh
            continue
        _submitted(after, conversation, customer)
        first_rating = answer[0] == "rating" and survey.rating is None
        if first_rating or answer[0] == "comment":
            _thank(customer, conversation, after, "thanks" if answer[0] == "rating" else "thanks_comment")
        return after
    raise Conflict("the survey changed meanwhile; the message will be retried")


def _thank(customer: Customer, conversation: Conversation, survey: Survey, text: str) -> None:
    words = _text(text, customer, survey)
    if not words:
        return
    try:
        outbound.send(
            OutboundMessage(purpose=Purpose.SURVEY, text=words, channel=survey.channel), customer, conversation
        )
    except (Refused, ProviderUnavailable, SentNotRecorded) as exc:
        logger.info("survey thanks not sent", extra={"reason": str(exc)[:200]})


def _submitted(survey: Survey, conversation: Conversation, customer: Customer) -> None:
    digest = hashlib.sha256((survey.comment or "").encode()).hexdigest()[:12]
    _announce("csat.submitted", survey, conversation, customer, f"{survey.id}:{survey.rating}:{digest}")


def _announce(event_type: str, survey: Survey, conversation: Conversation, customer: Customer, key: str) -> None:
    data: dict[str, Any] = {
        "conversation": conversation_view(conversation),
        "customer": customer_view(customer),
        "survey": survey_view(survey, conversation.id),
    }
    events.emit_many([(event_type, data, key)])


def survey_view(survey: Survey, conversation_id: str) -> dict[str, Any]:
    return {
        "id": survey.id,
        "cycle_id": survey.cycle_id,
        "conversation_id": conversation_id,
        "customer_id": survey.customer_id,
        "channel": survey.channel,
        "agent_ids": survey.agent_ids,
        "sent_at": _iso(survey.sent_at),
        "rating": survey.rating,
        "comment": survey.comment,
        "answered_at": _iso(survey.rated_at),
        "status": survey.status,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# --- The email page ------------------------------------------------------------------------------------


def _key() -> bytes:
    value = secret("link_secret")
    if not value:
        raise InvalidRequest("LINK_SECRET is not configured; survey links cannot be signed")
    return hashlib.sha256(b"omnihub-survey\n" + value.encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_link(survey: Survey, conversation_id: str) -> str:
    payload = f"{conversation_id}.{survey.id}.{int(survey.expires_at.timestamp())}".encode()
    token = _b64(payload) + "." + _b64(hmac.new(_key(), payload, hashlib.sha256).digest()[:20])
    return f"{settings().public_base_url.rstrip('/')}/csat/{token}"


def _opened(token: str) -> tuple[Conversation, Survey]:
    """The conversation and survey a token names; NotFound for a forged token, Conflict when the
    survey was answered, expired or replaced."""
    if not isinstance(token, str) or len(token) > 400 or token.count(".") != 1:
        raise NotFound("this survey link is not valid")
    encoded, signature = token.split(".")
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, TypeError):
        raise NotFound("this survey link is not valid") from None
    expected = hmac.new(_key(), payload, hashlib.sha256).digest()[:20]
    if not hmac.compare_digest(given, expected):
        raise NotFound("this survey link is not valid")
    try:
        conversation_id, survey_ref, expires = payload.decode().split(".")
        expires_at = int(expires)
    except ValueError:
        raise NotFound("this survey link is not valid") from None
    if utcnow().timestamp() >= expires_at:
        raise Conflict("this survey has expired")
    conversation = thread.get_conversation(conversation_id)
    survey = conversation.survey if conversation else None
    if conversation is None or survey is None or survey.id != survey_ref:
        raise Conflict("this survey is no longer open")
    if survey.status == "done":
        raise Conflict("this survey was answered already")
    return conversation, survey


def page(token: str) -> Survey:
    return _opened(token)[1]


def submit(token: str, rating: int, comment: str | None) -> Survey:
    """The page's answer: rating and comment at once (the link is then used up)."""
    if rating not in (1, 2, 3, 4, 5):
        raise InvalidRequest("rating: a whole number from 1 to 5")
    conversation, survey = _opened(token)
    customer = customer_store.get_customer(survey.customer_id)
    if customer is None:
        raise NotFound("the customer of this survey no longer exists")
    now = utcnow()
    text = (comment or "").strip()[:2000] or None
    after = survey.model_copy(
        update={"rating": rating, "rated_at": now, "comment": text, "status": "done", "answered_by": survey.answered_by}
    )
    try:
        conversation = _save(conversation, after)
    except conversation_state.StateChanged:
        raise Conflict("this survey was answered meanwhile") from None
    _submitted(after, conversation, customer)
    return after
