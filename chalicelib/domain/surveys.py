"""Satisfaction surveys (CSAT) as pure decisions: whether a resolved cycle gets a survey, what it
asks on each channel, and whether a customer's message answers it.

A survey is asked once per cycle, after the resolution, on the channel the customer last wrote
on. It is not asked for a cycle no agent handled (a bot alone, or nobody), for a cycle with fewer
customer messages than `min_customer_messages`, within `cooldown_hours` of the customer's last
survey, or in a queue that turns surveys off; a channel the customer opted out of is refused by
the outbound path like any other send. The rating (1 to 5) may be changed until the customer
leaves the comment, which is their next message after the rating (within `comment_minutes`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from chalicelib.domain.analytics import CycleState

RATINGS = (5, 4, 3, 2, 1)
# What each choice says (buttons, lists, quick replies); the digit alone also answers.
DEFAULT_LABELS = {5: "5 Excellent", 4: "4 Good", 3: "3 OK", 2: "2 Poor", 1: "1 Very poor"}
DEFAULT_TEXTS = {
    "question": "How did we do? Rate us from 1 (very poor) to 5 (excellent).",
    "question_sms": "How did we do? Reply with a number from 1 (very poor) to 5 (excellent).",
    "question_email": "How did we do? Rate us in one click: {link}",
    "thanks": "Thank you! If you like, tell us in one message what we could do better.",
    "thanks_comment": "Thank you for your feedback.",
    "subject": "How did we do?",
}
CHOICE_ID_PREFIX = "csat:"


class SurveyConfig(BaseModel):
    """`surveys` in the routing config."""

    enabled: bool = True
    delay_seconds: int = Field(default=60, ge=0, le=900)
    min_customer_messages: int = Field(default=1, ge=0, le=100)
    cooldown_hours: float = Field(default=24, ge=0, le=24 * 365)
    answer_hours: float = Field(default=72, gt=0, le=24 * 30)  # how long a survey can be answered
    comment_minutes: float = Field(default=30, ge=0, le=24 * 60)
    queues_off: list[str] = Field(default_factory=list)
    # An approved WhatsApp template for a survey outside the 24-hour window (Meta: its name; Twilio:
    # its Content SID); without one no survey goes out on WhatsApp after the window closed.
    whatsapp_template: str | None = None
    whatsapp_content_sid: str | None = None
    texts: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TEXTS))
    labels: dict[int, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS))
    # The same texts and labels in other languages ({"tr": {"question": "...", "5": "5 Harika"}}),
    # chosen by the customer's `language` attribute (`tr` for `tr-TR`); else `texts` and `labels`.
    languages: dict[str, dict[str, str]] = Field(default_factory=dict)

    def text(self, name: str, language: str | None = None) -> str:
        """A text in the customer's language, else the configured one, else the default ("" = not sent)."""
        texts = self._language(language)
        if name in texts:
            return texts[name]
        return self.texts.get(name, DEFAULT_TEXTS.get(name, ""))

    def label(self, rating: int, language: str | None = None) -> str:
        return self._language(language).get(str(rating)) or self.labels.get(rating) or str(rating)

    def _language(self, language: str | None) -> dict[str, str]:
        if not language:
            return {}
        chosen = language.strip().lower()
        return self.languages.get(chosen) or self.languages.get(chosen.split("-")[0]) or {}


class Survey(BaseModel):
    """A survey as stored on the conversation (its own version, like the control state)."""

    id: str
    cycle_id: str
    customer_id: str
    channel: str
    agent_ids: list[str] = Field(default_factory=list)
    sent_at: datetime
    expires_at: datetime
    rating: int | None = None
    rated_at: datetime | None = None
    comment: str | None = None
    answered_by: list[str] = Field(default_factory=list)  # inbound message ids already applied
    status: Literal["asked", "rated", "done"] = "asked"
    version: int = 0

    def open_at(self, now: datetime) -> bool:
        return self.status != "done" and now < self.expires_at


def survey_id(cycle_id: str) -> str:
    """One survey per cycle: the id is the cycle's, so a retried timer asks the same survey."""
    return "srv_" + cycle_id.removeprefix("cyc_")


def refusal(
    cycle: CycleState | None, config: SurveyConfig, last_survey_at: datetime | None, now: datetime
) -> str | None:
    """Why this cycle gets no survey, or None when it gets one."""
    if not config.enabled:
        return "surveys are off"
    if cycle is None or cycle.open or cycle.resolved_at is None:
        return "the cycle is not resolved (or a new one began)"
    if cycle.resolved_by != "agent":
        return "no agent handled the cycle"
    if cycle.customer_messages < config.min_customer_messages:
        return "too few customer messages"
    if cycle.queue in config.queues_off:
        return "the queue turns surveys off"
    if cycle.csat is not None:
        return "already asked"
    if last_survey_at is not None and now - last_survey_at < timedelta(hours=config.cooldown_hours):
        return "the customer was asked recently"
    return None


def new_survey(cycle: CycleState, channel: str, now: datetime, config: SurveyConfig) -> Survey:
    return Survey(
        id=survey_id(cycle.cycle_id),
        cycle_id=cycle.cycle_id,
        customer_id=cycle.customer_id,
        channel=channel,
        agent_ids=cycle.credited_agents,
        sent_at=now,
        expires_at=now + timedelta(hours=config.answer_hours),
    )


def language_of(attributes: dict[str, object]) -> str | None:
    """The customer's language as their attributes say (`language` or `lang`), if any."""
    chosen = attributes.get("language") or attributes.get("lang")
    return chosen.strip().lower()[:8] if isinstance(chosen, str) and chosen.strip() else None


def choices(config: SurveyConfig, language: str | None = None) -> tuple[tuple[str, str], ...]:
    """(id, label) for each rating, best first: what buttons and quick replies offer."""
    return tuple((f"{CHOICE_ID_PREFIX}{rating}", config.label(rating, language)) for rating in RATINGS)


_DIGIT = re.compile(r"^\s*([1-5])\s*[.!]?\s*$")
_STARS = re.compile(r"^\s*(★{1,5}|⭐{1,5})\s*$")


def rating_in(text: str, config: SurveyConfig) -> int | None:
    """The rating a message gives: a digit alone, a choice's label or id, or stars; else None."""
    candidate = (text or "").strip()
    if not candidate or len(candidate) > 40:
        return None
    match = _DIGIT.match(candidate)
    if match:
        return int(match.group(1))
    if candidate.lower().startswith(CHOICE_ID_PREFIX) and candidate[len(CHOICE_ID_PREFIX) :].strip() in "12345":
        value = candidate[len(CHOICE_ID_PREFIX) :].strip()
        return int(value) if len(value) == 1 else None
    labels = [*config.labels.items()] + [
        (int(key), label)
        for texts in config.languages.values()
        for key, label in texts.items()
        if key in ("1", "2", "3", "4", "5")
    ]
    for rating, label in labels:
        if label and candidate.casefold() == label.casefold():
            return int(rating)
    stars = _STARS.match(candidate)
    return len(stars.group(1)) if stars else None


Answer = tuple[Literal["rating", "comment"], int | None, str | None]


def answer_of(survey: Survey | None, text: str, message_id: str, now: datetime, config: SurveyConfig) -> Answer | None:
    """What a customer's message does to the survey: a (new) rating, the comment, or nothing (an
    ordinary message). A message already applied (a redelivery) is the same answer again."""
    if survey is None or not survey.open_at(now):
        return None
    rating = rating_in(text, config)
    if rating is not None:
        return ("rating", rating, None)
    commenting = survey.status == "rated" and survey.rated_at is not None and bool(text.strip())
    if commenting and survey.rated_at and now - survey.rated_at <= timedelta(minutes=config.comment_minutes):
        return ("comment", None, text.strip()[:2000])
    return None


def answered(survey: Survey, answer: Answer, message_id: str, now: datetime) -> Survey:
    kind, rating, comment = answer
    applied = [*survey.answered_by, message_id][-20:]
    if kind == "rating":
        return survey.model_copy(update={"rating": rating, "rated_at": now, "status": "rated", "answered_by": applied})
    return survey.model_copy(update={"comment": comment, "status": "done", "answered_by": applied})
