"""The built-in assistant: answers what the knowledge base knows, and hands the rest to a person.

It controls a conversation when the routing config names `assistant` as a queue's first
controller. For each customer message it:
- hands over at once when the customer asks for a person ("agent", "temsilci", ... in any
  configured language, accents and casing aside);
- answers from the knowledge base when one entry matches confidently (services/knowledge.py), in
  the language of the matched question (or the customer's), always offering a person;
- hands over an intent the config keeps for people (`assistant.intents`), and after
  `assistant.max_misses` messages it could not answer.
A handover says so to the customer (and, outside business hours, when a person will answer),
passes control to humans with its reason, a summary and what it collected, and the conversation
is queued. Every answer goes through the one outbound path, as a bot's, so it never counts as a
human's first response.

AWS requests for a message it answers: GetItem (the knowledge base version; the entries stay
cached in memory), then the outbound path's; an unanswered one adds an UpdateItem (its count).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from chalicelib.domain.business_hours import is_open
from chalicelib.domain.control import ControlAction, ControlRequest
from chalicelib.domain.customers import ASSISTANT, Control, Conversation, Customer
from chalicelib.domain.knowledge import fold, lowercase
from chalicelib.domain.messages import Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose, Sender, SenderType
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.domain.routing import AssistantConfig
from chalicelib.observability import logger
from chalicelib.services import auto_replies, control, knowledge, outbound
from chalicelib.services.errors import SentNotRecorded
from chalicelib.services.routing_config import routing_config

MAX_UNANSWERED_KEPT = 10


def respond(customer: Customer, conversation: Conversation, message: Message, *, now: datetime | None = None) -> None:
    now = now or utcnow()
    config = routing_config().assistant
    stated = customer.attributes.get("language")
    language = stated.strip().lower() if isinstance(stated, str) and stated.strip() else None
    asked = wants_person(message.body, config)
    if asked is not None:
        _hand_over(customer, conversation, message, language or asked, "the customer asked for a person", now)
        return
    match = knowledge.answer(message.body, language)
    if match is not None and config.intents is not None and match.entry.intent not in config.intents:
        reason = f"'{match.entry.intent or match.entry.id}' is answered by people"
        _hand_over(customer, conversation, message, language or match.language, reason, now, intent=match.entry.intent)
        return
    if match is not None:
        links = "".join(f"\n{link.title}: {link.url}" if link.title else f"\n{link.url}" for link in match.entry.links)
        offer = _text(config, match.language, "offer_person")
        _say(customer, conversation, message, f"{match.answer}{links}\n\n{offer}", now)
        if _misses(conversation.control):
            control.remember(conversation, {**_metadata(conversation.control), "misses": 0})
        return
    misses = _misses(conversation.control) + 1
    if misses >= config.max_misses:
        _hand_over(customer, conversation, message, language, f"could not answer {misses} messages", now)
        return
    kept = _metadata(conversation.control)
    unanswered = [*kept.get("unanswered", []), message.body[:500]][-MAX_UNANSWERED_KEPT:]
    control.remember(conversation, {**kept, "misses": misses, "unanswered": unanswered})
    reply_language = language or config.default_language
    text = f"{_text(config, reply_language, 'not_understood')} {_text(config, reply_language, 'offer_person')}"
    _say(customer, conversation, message, text, now)


def wants_person(text: str, config: AssistantConfig) -> str | None:
    """The language of the "I want a person" keyword the message holds, if any (whole words)."""
    for language, keywords in config.handoff_keywords.items():
        said = " ".join(re.findall(r"\w+", fold(lowercase(text, language))))
        for keyword in keywords:
            wanted = " ".join(re.findall(r"\w+", fold(lowercase(keyword, language))))
            if wanted and re.search(rf"(?<!\w){re.escape(wanted)}\w{{0,4}}(?!\w)", said):
                return language
    return None


def _hand_over(
    customer: Customer,
    conversation: Conversation,
    message: Message,
    language: str | None,
    reason: str,
    now: datetime,
    *,
    intent: str | None = None,
) -> None:
    config = routing_config()
    chosen = language or config.assistant.default_language
    text = _text(config.assistant, chosen, "handing_off")
    schedule = auto_replies.schedule_for(conversation.task_queue or config.default_queue)
    if schedule is not None and not is_open(schedule, now):
        closed = _text(config.assistant, chosen, "closed")
        text = f"{text} {closed.replace('{next_opening}', auto_replies.opening_text(schedule, customer, now))}"
    _say(customer, conversation, message, text, now)
    kept = _metadata(conversation.control)
    unanswered = kept.get("unanswered", [])
    summary = f"Assistant: {reason}. Last message: {message.body[:300]!r}"
    fields: dict[str, Any] = dict(kept.get("fields", {}))
    if intent:
        fields["intent"] = intent
    try:
        control.change(
            conversation.id,
            ControlRequest(
                action=ControlAction.PASS,
                to="humans",
                by=ASSISTANT,
                reason=reason,
                metadata={"summary": summary, "fields": fields, "unanswered": unanswered, "language": chosen},
            ),
            now=now,
        )
    except Refused as refused:  # someone took it meanwhile: nothing left to hand over
        logger.info("assistant handover not needed", extra={"code": refused.code})


def _say(customer: Customer, conversation: Conversation, message: Message, text: str, now: datetime) -> None:
    try:
        outbound.send(
            OutboundMessage(
                purpose=Purpose.BOT_REPLY, text=text, channel=message.channel, sender=Sender(SenderType.BOT, ASSISTANT)
            ),
            customer,
            conversation,
            now=now,
        )
    except (Refused, SentNotRecorded) as exc:
        logger.warning("assistant answer not sent", extra={"reason": str(exc)[:200]})
    except ProviderUnavailable:
        raise  # the routing worker retries the message; the answer goes out then


def _text(config: AssistantConfig, language: str, name: str) -> str:
    for candidate in (language, language.split("-")[0], config.default_language, "en"):
        texts = config.texts.get(candidate)
        if texts and name in texts:
            return texts[name]
    return ""


def _metadata(current: Control | None) -> dict[str, Any]:
    return dict(current.metadata) if current else {}


def _misses(current: Control | None) -> int:
    value = _metadata(current).get("misses", 0)
    return value if isinstance(value, int) else 0
