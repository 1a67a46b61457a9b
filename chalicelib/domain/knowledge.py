"""The built-in assistant's knowledge base and its matcher (pure: no I/O).

An entry holds question variants (each in a language), one answer per language, optional links
and an optional intent name. `match(query, language, entries)` finds the entry a customer's
message asks about, with a score from 0 to 100 and whether it is confident: the best entry is
above `threshold` and at least `margin` ahead of the runner-up (a different entry).

Text is compared after normalisation, per language:

1. Unicode NFC, then casing by the language's rules: Turkish and Azerbaijani map "I" to dotless
   "\u0131" and "İ" to "i" (Python's lower() gives "i", and "i" plus a combining dot).
2. Words (letters and digits), each reduced to its stem by the language's Snowball stemmer
   (snowballstemmer): "siparişim", "siparişimi", "siparişlerim" all become "sipariş"; "orders"
   becomes "order". A language without a stemmer is compared word for word.
3. A second, folded form drops diacritics and the dot distinction (ş→s, ğ→g, ü→u, ö→o, ç→c,
   dotless i→i, é→e, ß→ss), for customers typing without a Turkish (or French, German...) keyboard.

Scores are rapidfuzz's `token_set_ratio` over those stemmed forms (the higher of the exact and
the folded comparison), the best over an entry's question variants. Without a known language the
query is compared with every language's questions, each normalised by its own language's rules,
and the answer is in the language of the best-matching question. With a known language only that
language's questions are compared first; when none matches confidently, every language's are (the
customer may write in another language than their profile says).

Two refinements keep unrelated messages from matching, both derived from the knowledge base
itself rather than from word lists: words in the questions of many entries ("my", "is", "how",
"ne") are left out of comparisons (see common_words), and a query word the questions never
use is replaced by the closest one they do when rapidfuzz's ratio says it is a near spelling
("nerde" for "nerede", "pasword" for "password").
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Defaults measured on the knowledge base of tests/unit/test_knowledge_matching.py (its table
# prints every phrasing's score): real phrasings of a known question score 80 to 100, with the
# runner-up far behind; unrelated messages score below 65, or tie several entries on a common word.
DEFAULT_THRESHOLD = 80.0
DEFAULT_MARGIN = 10.0

ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
INTENT = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_QUESTIONS = 50
MAX_QUESTION_LENGTH = 500
MAX_ANSWERS = 30
MAX_ANSWER_LENGTH = 4000
MAX_LINKS = 10
MAX_URL_LENGTH = 2048
MAX_QUERY_LENGTH = 1000  # a longer message is matched on its first 1000 characters
# A word is common (left out of comparisons) when it is in the questions of this many entries...
COMMON_MIN_ENTRIES = 3
# ...and this share of them.
COMMON_SHARE = 0.2
# A query word the questions do not use is read as the closest one they do, this close (fuzz.ratio)...
SPELLING_CUTOFF = 85.0
# ...when it has at least this many letters.
SPELLING_MIN_LENGTH = 3

# ISO 639-1 codes of the languages snowballstemmer has a stemmer for.
STEMMERS = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "eo": "esperanto",
    "es": "spanish",
    "et": "estonian",
    "eu": "basque",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "ne": "nepali",
    "nl": "dutch",
    "nn": "norwegian",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}
DOTTED_I_LANGUAGES = frozenset({"tr", "az"})  # dotless and dotted i are separate letters
DOTLESS_I = "\u0131"
CAPITAL_DOTTED_I = "\u0130"
_WORD = re.compile(r"\w+")
_FOLD = str.maketrans({DOTLESS_I: "i", "ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ł": "l", "þ": "th"})


# --- The knowledge base ------------------------------------------------------------------------


def primary_language(language: str | None) -> str | None:
    """The primary subtag: "tr-TR" -> "tr"; None or "" -> None."""
    if not language:
        return None
    return re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower() or None


def _language_code(value: str) -> str:
    code = value.strip().lower()
    if not LANGUAGE.match(code):
        raise ValueError(f"'{value[:20]}' is not a language code: use ISO 639 letters such as 'tr' or 'en'")
    return code


class Question(BaseModel):
    """One way a customer asks the entry's question, in a language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str
    text: str = Field(min_length=1, max_length=MAX_QUESTION_LENGTH)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _language_code(value)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not _WORD.search(value):
            raise ValueError("a question needs at least one word")
        return value.strip()


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    title: str = Field(min_length=1, max_length=200)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if any(char.isspace() or ord(char) < 32 for char in value):
            raise ValueError("a link must not contain whitespace or control characters")
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            raise ValueError("a link must be a valid URL") from None
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ValueError("a link must be an https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a link must not contain credentials")
        return value


class KnowledgeEntry(BaseModel):
    """One question the assistant can answer. Every question's language has an answer, so the
    reply can always be in the language the customer asked in."""

    model_config = ConfigDict(extra="ignore")  # stored items carry their keys too

    id: str
    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)
    answers: dict[str, str] = Field(min_length=1, max_length=MAX_ANSWERS)
    links: list[Link] = Field(default_factory=list, max_length=MAX_LINKS)
    intent: str | None = None
    updated_at: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ENTRY_ID.match(value):
            raise ValueError("entry ids are 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("answers")
    @classmethod
    def _answers(cls, value: dict[str, str]) -> dict[str, str]:
        answers: dict[str, str] = {}
        for language, text in value.items():
            code = _language_code(language)
            if code in answers:
                raise ValueError(f"two answers for language '{code}'")
            if not text.strip() or len(text) > MAX_ANSWER_LENGTH:
                raise ValueError(f"the '{code}' answer must be 1 to {MAX_ANSWER_LENGTH} characters")
            answers[code] = text.strip()
        return answers

    @field_validator("intent")
    @classmethod
    def _intent(cls, value: str | None) -> str | None:
        if value is not None and not INTENT.match(value):
            raise ValueError("an intent is 1 to 64 lowercase letters, digits, '_', '.' or '-', such as 'order_status'")
        return value

    @model_validator(mode="after")
    def _every_question_language_has_an_answer(self) -> KnowledgeEntry:
        missing = sorted({question.language for question in self.questions} - set(self.answers))
        if missing:
            raise ValueError(f"questions in {', '.join(missing)} need an answer in that language too")
        return self


# --- Normalisation -----------------------------------------------------------------------------


def lowercase(text: str, language: str | None) -> str:
    """Lower case by the language's rules: Turkish and Azerbaijani keep dotted and dotless i apart."""
    text = unicodedata.normalize("NFC", text)
    if primary_language(language) in DOTTED_I_LANGUAGES:
        text = text.replace("I", DOTLESS_I).replace(CAPITAL_DOTTED_I, "i")
        return text.lower()
    # Capital dotted I lower-cases to "i" + U+0307 (combining dot above): drop the dot.
    return unicodedata.normalize("NFC", text.casefold().replace("i\u0307", "i"))


def fold(text: str) -> str:
    """Without diacritics or dotless i: "şifremi, ücret, où, straße" -> "sifremi, ucret, ou, strasse"."""
    decomposed = unicodedata.normalize("NFD", text.translate(_FOLD))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


@lru_cache(maxsize=64)
def _stemmer(language: str | None) -> Any:
    name = STEMMERS.get(language or "")
    if name is None:
        return None
    import snowballstemmer

    return snowballstemmer.stemmer(name)


@lru_cache(maxsize=65536)
def _stem(language: str | None, word: str) -> str:
    """A word's stem (remembered: snowballstemmer is pure Python, and a knowledge base repeats
    its words, so building an index stems each distinct word once)."""
    stemmer = _stemmer(language)
    return stemmer.stemWord(word) if stemmer is not None else word


def words(text: str, language: str | None) -> list[str]:
    """The text's stemmed, lower-cased words in the language's rules."""
    code = primary_language(language)
    return [_stem(code, token) for token in _WORD.findall(lowercase(text[:MAX_QUERY_LENGTH], code))]


@dataclass(frozen=True)
class Forms:
    """A text ready to compare: its stemmed words, and the same folded."""

    exact: str
    folded: str

    @classmethod
    def of(cls, stems: list[str], common: frozenset[str] = frozenset()) -> Forms:
        """The forms of a text's stems, leaving out `common` ones (folded) unless nothing else is left."""
        kept = [stem for stem in stems if fold(stem) not in common] or stems
        text = " ".join(kept)
        return cls(text, fold(text))


def common_words(stems_per_entry: Iterable[set[str]]) -> frozenset[str]:
    """Folded stems found in the questions of at least COMMON_MIN_ENTRIES entries and
    COMMON_SHARE of them: words such as "my", "is", "how" that tell entries apart no better than
    chance, and would let "where is my car" pass for "where is my order"."""
    counts: Counter[str] = Counter()
    total = 0
    for stems in stems_per_entry:
        total += 1
        counts.update({fold(stem) for stem in stems})
    floor = max(COMMON_MIN_ENTRIES, COMMON_SHARE * total)
    return frozenset(stem for stem, count in counts.items() if count >= floor)


# --- Matching ----------------------------------------------------------------------------------


class Match(BaseModel):
    """The entry a query asks about: `score` 0..100 of its best question variant (`question`),
    `runner_up` the next entry's score, `language` the answer's, and `confident` when the
    assistant may answer on its own."""

    model_config = ConfigDict(frozen=True)

    entry: KnowledgeEntry
    score: float
    confident: bool
    language: str
    question: Question
    runner_up: float = 0.0

    @property
    def answer(self) -> str:
        return self.entry.answers[self.language]


@dataclass(frozen=True)
class _Candidate:
    entry_index: int
    question: Question
    forms: Forms


class KnowledgeIndex:
    """Entries with their questions normalised once; build one per version of the knowledge
    base and match many queries against it."""

    def __init__(self, entries: Iterable[KnowledgeEntry]) -> None:
        self.entries: list[KnowledgeEntry] = list(entries)
        stems: dict[str, list[tuple[int, Question, list[str]]]] = {}
        for index, entry in enumerate(self.entries):
            for question in entry.questions:
                found = words(question.text, question.language)
                if found:
                    stems.setdefault(question.language, []).append((index, question, found))
        self._common: dict[str, frozenset[str]] = {}
        self._candidates: dict[str, list[_Candidate]] = {}
        self._choices: dict[str, tuple[list[str], list[str]]] = {}
        self._vocabulary: dict[str, list[str]] = {}
        self._most_variants: dict[str, int] = {}
        self._known: dict[str, set[str]] = {}
        for language, questions in stems.items():
            per_entry: dict[int, set[str]] = {}
            for index, _, found in questions:
                per_entry.setdefault(index, set()).update(found)
            common = self._common[language] = common_words(per_entry.values())
            self._known[language] = {fold(stem) for found in per_entry.values() for stem in found}
            self._vocabulary[language] = sorted(self._known[language])
            candidates = [_Candidate(index, question, Forms.of(found, common)) for index, question, found in questions]
            self._candidates[language] = candidates
            self._most_variants[language] = max(Counter(candidate.entry_index for candidate in candidates).values())
            self._choices[language] = (
                [candidate.forms.exact for candidate in candidates],
                [candidate.forms.folded for candidate in candidates],
            )

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def languages(self) -> list[str]:
        return sorted(self._candidates)

    def common(self, language: str) -> frozenset[str]:
        return self._common.get(language, frozenset())

    def _spelled(self, stems: list[str], language: str) -> list[str]:
        """Each stem the questions do not use, replaced by the closest one they do (fuzz.ratio at
        least SPELLING_CUTOFF): "nerde" stems to "ner", which becomes "nere" as in "nerede"."""
        from rapidfuzz import fuzz, process

        vocabulary, known = self._vocabulary[language], self._known[language]
        spelled = []
        for stem in stems:
            folded = fold(stem)
            if folded not in known and len(folded) >= SPELLING_MIN_LENGTH:
                closest = process.extractOne(
                    folded, vocabulary, scorer=fuzz.ratio, processor=None, score_cutoff=SPELLING_CUTOFF
                )
                if closest is not None:
                    stem = closest[0]
            spelled.append(stem)
        return spelled

    def scores(
        self, query: str, languages: Iterable[str] | None = None, top: int | None = None
    ) -> list[tuple[float, _Candidate]]:
        """The `top` entries' best (score, question), best first (every entry's when None);
        `languages` limits the questions compared."""
        from rapidfuzz import fuzz, process

        best: dict[int, tuple[float, _Candidate]] = {}
        for language in self.languages if languages is None else languages:
            candidates = self._candidates.get(language)
            found = words(query, language)
            if not candidates or not found:
                continue
            forms = Forms.of(self._spelled(found, language), self._common[language])
            exact_choices, folded_choices = self._choices[language]
            # Enough results for `top` distinct entries even if one entry's variants all come first.
            wanted = None if top is None else top * self._most_variants[language]
            for text, choices in ((forms.exact, exact_choices), (forms.folded, folded_choices)):
                results = process.extract(text, choices, scorer=fuzz.token_set_ratio, processor=None, limit=wanted)
                seen: set[int] = set()
                for _, score, position in results:  # best first
                    candidate = candidates[position]
                    seen.add(candidate.entry_index)
                    if top is not None and len(seen) > top:
                        break  # an entry in the overall top is in the top of the pass where it scores best
                    current = best.get(candidate.entry_index)
                    if current is None or score > current[0]:
                        best[candidate.entry_index] = (float(score), candidate)
        ranked = sorted(best.values(), key=lambda pair: (-pair[0], pair[1].entry_index))
        return ranked if top is None else ranked[:top]


def _as_index(entries: KnowledgeIndex | Sequence[KnowledgeEntry]) -> KnowledgeIndex:
    return entries if isinstance(entries, KnowledgeIndex) else KnowledgeIndex(entries)


def _matches(
    ranked: list[tuple[float, _Candidate]],
    index: KnowledgeIndex,
    language: str | None,
    threshold: float,
    margin: float,
    limit: int,
) -> list[Match]:
    found = []
    for position, (score, candidate) in enumerate(ranked[:limit]):
        entry = index.entries[candidate.entry_index]
        following = ranked[position + 1][0] if position + 1 < len(ranked) else 0.0
        confident = position == 0 and score >= threshold and score - following >= margin
        # The language the customer wrote in (the matched question's, always answered), unless
        # the knowledge base has no questions in the customer's known language to tell.
        answer_language = candidate.question.language
        if language is not None and language not in index.languages and language in entry.answers:
            answer_language = language
        found.append(
            Match(
                entry=entry,
                score=round(score, 1),
                confident=confident,
                language=answer_language,
                question=candidate.question,
                runner_up=round(following, 1),
            )
        )
    return found


def rank(
    query: str,
    language: str | None,
    entries: KnowledgeIndex | Sequence[KnowledgeEntry],
    limit: int = 10,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
) -> list[Match]:
    """The entries the query may ask about, best first (at most `limit`); only the first can be
    confident. With a known language its questions come first; every language's when none of
    them matches confidently."""
    index = _as_index(entries)
    code = primary_language(language)
    if code is not None and code in index.languages:
        found = _matches(index.scores(query, [code], top=limit + 1), index, code, threshold, margin, limit)
        if found and found[0].confident:
            return found
    return _matches(index.scores(query, top=limit + 1), index, code, threshold, margin, limit)


def match(
    query: str,
    language: str | None,
    entries: KnowledgeIndex | Sequence[KnowledgeEntry],
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
) -> Match | None:
    """The best entry for the query (confident or not), or None when nothing shares a word with it."""
    found = rank(query, language, entries, limit=1, threshold=threshold, margin=margin)
    return found[0] if found and found[0].score > 0 else None
