"""Sortable identifiers (ULIDs): 48-bit millisecond time + 80 random bits, Crockford base32.

Ids made in one process are strictly increasing even within one millisecond, so a thread's
messages sort by arrival; ids from different processes in the same millisecond still form a
total order (ties broken by the random part).
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime

from chalicelib.domain import clock

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class UlidGenerator:
    """Monotonic within one generator: each id is greater than the one before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def __call__(self, now_ms: int | None = None) -> str:
        with self._lock:
            ms = clock.now_ms() if now_ms is None else now_ms
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_random += 1
                if self._last_random >= 1 << _RANDOM_BITS:
                    ms += 1
                    self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # Headroom so increments within a millisecond never overflow in practice.
                self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms = ms
            return _encode(ms, 10) + _encode(self._last_random, 16)


_generator = UlidGenerator()


def new_ulid() -> str:
    return _generator()


def ulid_time_ms(ulid: str) -> int:
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def id_datetime(prefixed_id: str) -> datetime:
    """The moment a prefixed id was made, to the millisecond."""
    return datetime.fromtimestamp(ulid_time_ms(prefixed_id.split("_", 1)[-1]) / 1000, tz=UTC)


def id_floor(prefix: str, at: datetime) -> str:
    """An id below every id of `prefix` made at or after `at` (a key to start reading from)."""
    return f"{prefix}_{_encode(int(at.timestamp() * 1000), 10)}{'0' * 16}"


def new_id(prefix: str) -> str:
    """A prefixed id such as `cus_01J...`: the prefix tells a reader what kind of thing it is."""
    return f"{prefix}_{new_ulid()}"


def is_id(value: str, prefix: str) -> bool:
    """True for an id this hub could have made with `prefix` (anything else cannot exist)."""
    head, sep, tail = value.partition("_")
    return bool(sep) and head == prefix and len(tail) == 26 and all(char in _ALPHABET for char in tail)
