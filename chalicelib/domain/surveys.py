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
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from chalicelib.domain.analytics import CycleState
from chalicelib.domain.default_texts import DEFAULT_SURVEY_TEXTS

RATINGS = (5, 4, 3, 2, 1)
TEXT_NAMES = ("question", "question_sms", "question_email", "subject", "thanks", "thanks_comment")
# The built-in English texts and labels: what the config shows until the business words its own.
# What each choice says (buttons, lists, quick replies); the digit alone also answers.
DEFAULT_LABELS = {rating: DEFAULT_SURVEY_TEXTS["en"][str(rating)] for rating in RATINGS}
DEFAULT_TEXTS = {name: DEFAULT_SURVEY_TEXTS["en"][name] for name in TEXT_NAMES}
CHOICE_ID_PREFIX = "csat:"
FALLBACK_LANGUAGE = "en"  # the last resort: every text and label exists in English


def language_code(value: str | None) -> str:
    """`pt_BR` / ` PT-br ` -> `pt-br`: how languages are compared ('' for none)."""
    return (value or "").strip().lower().replace("_", "-")


class SurveyConfig(BaseModel):
    """`surveys` in the routing config.

    Texts and labels follow the customer's `language` attribute, like the assistant's texts:
    `languages[<code>]` (`es-mx`, then `es`) as configured, else the hub's own words in that
    language (domain/default_texts.py: en, es, fr, de, pt), else the same steps for
    `default_language`, else English. `texts` and `labels` are the business's words in
    `default_language`; one left equal to the built-in English is no choice of the business, so it
    hides no translation. A text set to "" in `texts` is not sent in any language (a switch, not
    wording), unless a language of `languages` sets it.
    """

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
    # chosen by the customer's `language` attribute (`tr` for `tr-TR`).
    languages: dict[str, dict[str, str]] = Field(default_factory=dict)
    # The language of `texts` and `labels`, and of customers whose language is unknown or has no words.
    default_language: str = Field(default=FALLBACK_LANGUAGE, min_length=2, max_length=35)

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        # Keys as the lookup spells a customer's language, so "pt-BR" or "ES" is found at all.
        return {language_code(code): texts for code, texts in value.items() if language_code(code)}

    @field_validator("default_language")
    @classmethod
    def _default_code(cls, value: str) -> str:
        return language_code(value) or FALLBACK_LANGUAGE

    def text(self, name: str, language: str | None = None) -> str:
        """A text in the customer's language (see the class docstring); "" = not sent."""
        chosen = self.texts.get(name)
        override = None if chosen is None or chosen == DEFAULT_TEXTS.get(name) else chosen
        return self._lookup(name, override, language, switchable=True) or ""

    def label(self, rating: int, language: str | None = None) -> str:
        chosen = self.labels.get(rating)
        override = None if not chosen or chosen == DEFAULT_LABELS.get(rating) else chosen
        return self._lookup(str(rating), override, language, switchable=False) or str(rating)

    def _lookup(self, key: str, override: str | None, language: str | None, *, switchable: bool) -> str | None:
        defaults = _with_base(self.default_language)
        for code in _with_base(language, self.default_language, FALLBACK_LANGUAGE):
            configured = self.languages.get(code, {})
            if key in configured:
                return configured[key]
            if override is not None and (code in defaults or (switchable and override == "")):
                return override
            built_in = DEFAULT_SURVEY_TEXTS.get(code, {})
            if key in built_in:
                return built_in[key]
        return None

    def all_labels(self) -> list[tuple[int, str]]:
        """Every label a customer may have been shown, in any language: a tap on one answers."""
        found = [(rating, label) for rating, label in self.labels.items() if label]
        for texts in (*self.languages.values(), *DEFAULT_SURVEY_TEXTS.values()):
            found += [(int(key), label) for key, label in texts.items() if key in _RATING_KEYS and label]
        return found


_RATING_KEYS = tuple(str(rating) for rating in RATINGS)


def _with_base(*languages: str | None) -> list[str]:
    """Each language followed by its base (`es-mx`, `es`), once each, in order."""
    codes: list[str] = []
    for language in languages:
        code = language_code(language)
        for candidate in (code, code.split("-")[0]):
            if candidate and candidate not in codes:
                codes.append(candidate)
    return codes


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
    # The customer's language when asked: the thanks (and the email page) speak the question's language.
    language: str | None = None
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


def new_survey(
    cycle: CycleState, channel: str, now: datetime, config: SurveyConfig, language: str | None = None
) -> Survey:
    return Survey(
        id=survey_id(cycle.cycle_id),
        cycle_id=cycle.cycle_id,
        customer_id=cycle.customer_id,
        channel=channel,
        agent_ids=cycle.credited_agents,
        sent_at=now,
        expires_at=now + timedelta(hours=config.answer_hours),
        language=language,
    )


def language_of(attributes: dict[str, Any]) -> str | None:
    """The customer's language as their attributes say (`language` or `lang`), if any."""
    chosen = attributes.get("language") or attributes.get("lang")
    return chosen.strip().lower()[:8] if isinstance(chosen, str) and chosen.strip() else None


def choices(config: SurveyConfig, language: str | None = None) -> tuple[tuple[str, str], ...]:
    """(id, label) for each rating, best first: what buttons and quick replies offer."""
    return tuple((f"{CHOICE_ID_PREFIX}{rating}", config.label(rating, language)) for rating in RATINGS)


_DIGIT = re.compile(r"^([1-5])\s*[.!]?$")
# "5 stars", "4/5", "5 estrellas", "5 étoiles", "5 Sterne", "5 estrelas" (and the singulars).
_DIGIT_OUT_OF_FIVE = re.compile(
    r"^([1-5])\s*(?:/\s*5|(?:stars?|estrellas?|[ée]toiles?|sterne?|estrelas?)\b)\s*[.!]?$", re.IGNORECASE
)
_CHOICE_ID = re.compile(rf"^{re.escape(CHOICE_ID_PREFIX)}([1-5])$", re.IGNORECASE)
_STARS = re.compile(r"^(★{1,5}|⭐{1,5})$")
# Numbers as words in the languages with built-in texts, the whole message only. Left out: "um"
# (Portuguese 1, but also an English hesitation) and anything above five or below one.
_NUMBER_WORDS = {
    **{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5},
    **{"uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5},
    **{"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5},
    **{"eins": 1, "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "fuenf": 5},
    **{"uma": 1, "dois": 2, "duas": 2, "três": 3, "quatro": 4},
}


def rating_in(text: str, config: SurveyConfig) -> int | None:
    """The rating a message gives, or None. The whole message must be one of:

    - a digit 1 to 5, maybe with a final "." or "!" ("5", " 4 ", "3."), full-width digits too;
    - a digit out of five: "4/5", "5 stars", "5 estrellas", "5 étoiles", "5 Sterne", "5 estrelas";
    - a number word in English, Spanish, French, German or Portuguese ("five", "cinco", "fünf");
    - a choice's id (`csat:4`: what buttons, lists, quick replies and postbacks carry) or the label
      of a choice in any language the hub speaks ("4 Good", "4 bien": what a tap sends as text);
    - one to five stars (★ or ⭐).

    Not a rating: 0, 6 and anything else out of range ("10/10", "6 stars"), decimals ("4.5"), a
    rating inside a sentence ("5 days late!", "1 more thing"), a bare adjective ("good", "ok": too
    common in ordinary messages), and anything longer than 40 characters."""
    # NFKC: a full-width digit (U+FF15, from Japanese and Chinese keyboards) is the digit; the emoji
    # variation selector (U+FE0F) phones add after a star is dropped.
    candidate = " ".join(unicodedata.normalize("NFKC", text or "").replace("\ufe0f", "").split())
    if not candidate or len(candidate) > 40:
        return None
    for pattern in (_DIGIT, _DIGIT_OUT_OF_FIVE, _CHOICE_ID):
        match = pattern.match(candidate)
        if match:
            return int(match.group(1))
    folded = candidate.casefold()
    word = _NUMBER_WORDS.get(folded.rstrip(".!"))
    if word is not None:
        return word
    for rating, label in config.all_labels():
        if folded == " ".join(label.split()).casefold():
            return rating
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
