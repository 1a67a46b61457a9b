"""Request and response shapes of the knowledge base API (`/v1/knowledge`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.events import iso_utc
from chalicelib.domain.knowledge import MAX_LINKS, MAX_QUESTIONS, KnowledgeEntry, Link, Match, Question


class KnowledgeEntryBody(BaseModel):
    """`PUT /v1/knowledge/{id}`. The checks that need the whole entry (every question's language
    has an answer, the id's form) are made by chalicelib.services.knowledge.put_entry, which
    answers 400 with a clear message. `id` and `updated_at` may come along (an entry read with
    GET can be sent back as it is): `id` must be the path's, `updated_at` is set by the hub."""

    model_config = ConfigDict(extra="forbid")

    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)
    answers: dict[str, str] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list, max_length=MAX_LINKS)
    intent: str | None = None
    id: str | None = None
    updated_at: str | None = None


def entry_view(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "intent": entry.intent,
        "questions": [{"language": question.language, "text": question.text} for question in entry.questions],
        "answers": dict(entry.answers),
        "links": [{"url": link.url, "title": link.title} for link in entry.links],
        "updated_at": iso_utc(entry.updated_at) if entry.updated_at else None,
    }


def match_view(match: Match) -> dict[str, Any]:
    """One result of `GET /v1/knowledge?query=...`: how well the entry matched, and what the
    assistant would answer."""
    return {
        "id": match.entry.id,
        "intent": match.entry.intent,
        "score": match.score,
        "confident": match.confident,
        "matched_question": {"language": match.question.language, "text": match.question.text},
        "language": match.language,
        "answer": match.answer,
        "links": [{"url": link.url, "title": link.title} for link in match.entry.links],
    }
