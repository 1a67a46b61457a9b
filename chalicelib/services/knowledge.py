"""The assistant's knowledge base: entries behind the REST API, and the matcher over a copy
cached in memory.

Each instance keeps the entries it last read, normalised once into a KnowledgeIndex, with the
knowledge base's version. `answer()` and `search()` read the version (one GetItem) and reuse the
copy while it is current; a put or delete anywhere bumps the version, so the next call on every
instance reloads (one Query per 100 entries).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import ValidationError

from chalicelib.api.knowledge_models import KnowledgeEntryBody
from chalicelib.api.reply_models import validation_problem
from chalicelib.config import settings
from chalicelib.domain import knowledge as matcher
from chalicelib.domain.knowledge import ENTRY_ID, KnowledgeEntry, KnowledgeIndex, Match
from chalicelib.domain.messages import utcnow
from chalicelib.services.errors import InvalidRequest, NotFound
from chalicelib.store import knowledge as store

MAX_RESULTS = 10
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")

# (table, version, index) of the entries this instance last read; None until the first read.
_cached: tuple[str, int, KnowledgeIndex] | None = None


def _checked(entry_id: str) -> str:
    if not ENTRY_ID.match(entry_id):
        raise InvalidRequest("entry ids are 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return entry_id


def put_entry(entry_id: str, body: KnowledgeEntryBody | dict[str, Any]) -> tuple[KnowledgeEntry, bool]:
    """Create or replace an entry; True when it was created."""
    _checked(entry_id)
    try:
        fields = body if isinstance(body, KnowledgeEntryBody) else KnowledgeEntryBody.model_validate(body)
        if fields.id is not None and fields.id != entry_id:
            raise InvalidRequest(f"the body's id '{fields.id[:64]}' is not the path's '{entry_id}'")
        entry = KnowledgeEntry.model_validate(
            {**fields.model_dump(exclude={"id", "updated_at"}), "id": entry_id, "updated_at": utcnow()}
        )
    except ValidationError as exc:
        raise InvalidRequest(validation_problem(exc)) from None
    try:
        created = store.put_entry(entry)
    except store.KnowledgeBaseFull:
        raise InvalidRequest(f"the knowledge base holds {store.MAX_ENTRIES} entries; delete one first") from None
    return entry, created


def get_entry(entry_id: str) -> KnowledgeEntry:
    entry = store.get_entry(_checked(entry_id))
    if entry is None:
        raise NotFound(f"no knowledge entry '{entry_id}'")
    return entry


def delete_entry(entry_id: str) -> None:
    if not store.delete_entry(_checked(entry_id)):
        raise NotFound(f"no knowledge entry '{entry_id}'")


def encode_cursor(entry: KnowledgeEntry) -> str:
    return base64.urlsafe_b64encode(entry.id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not ENTRY_ID.match(decoded):
        raise InvalidRequest("'cursor' is not one this API returned")
    return decoded


def list_entries(limit: int, cursor: str | None = None) -> tuple[list[KnowledgeEntry], str | None]:
    """A page of entries in id order, and the cursor of the next page (None after the last)."""
    entries, more = store.list_page(limit, decode_cursor(cursor) if cursor else None)
    return entries, encode_cursor(entries[-1]) if more and entries else None


def index() -> KnowledgeIndex:
    """The current entries, matched against in memory: one GetItem when this instance's copy is
    current, else also the Query pages that read them again."""
    global _cached
    table = settings().table_name
    version = store.version()
    cached = _cached
    if cached is not None and cached[:2] == (table, version):
        return cached[2]
    # The version was read before the entries: a write in between makes the copy newer than its
    # version, so the next call reloads it again rather than keeping a stale one.
    fresh = KnowledgeIndex(store.list_entries())
    _cached = (table, version, fresh)
    return fresh


def forget_cache() -> None:
    global _cached
    _cached = None


def _checked_query(query: str, language: str | None) -> str | None:
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("'query' must be a non-empty text")
    if len(query) > matcher.MAX_QUERY_LENGTH:
        raise InvalidRequest(f"'query' must be at most {matcher.MAX_QUERY_LENGTH} characters")
    if language is None or not language.strip():
        return None
    if not _LANGUAGE.match(language.strip()):
        raise InvalidRequest("'language' must be a language code such as 'tr', 'en' or 'pt-BR'")
    return matcher.primary_language(language)


def search(query: str, language: str | None = None, limit: int = MAX_RESULTS) -> list[Match]:
    """The entries the query may ask about, best first, with their scores (only the first can be
    confident): what `GET /v1/knowledge?query=...` shows to test the matching."""
    code = _checked_query(query, language)
    return matcher.rank(query, code, index(), limit=limit)


def answer(query: str, language: str | None = None) -> Match | None:
    """The entry the assistant answers a customer's message with, when one matches confidently
    (`match.answer` is the text, in `match.language`), else None: the assistant does not know."""
    if not isinstance(query, str) or not query.strip():
        return None
    code = matcher.primary_language(language) if language and _LANGUAGE.match(language.strip()) else None
    found = matcher.match(query[: matcher.MAX_QUERY_LENGTH], code, index())
    return found if found is not None and found.confident else None
