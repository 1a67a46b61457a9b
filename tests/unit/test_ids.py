"""Given ids made at arrival, when sorted as strings, they are in arrival order."""

from __future__ import annotations

import re

from chalicelib.domain.ids import new_id, new_ulid, ulid_time_ms


def test_ulids_are_strictly_increasing_within_one_millisecond() -> None:
    ids = [new_ulid(now_ms=1_700_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_ulids_sort_by_time_and_carry_it() -> None:
    early, late = new_ulid(now_ms=1_800_000_000_000), new_ulid(now_ms=1_800_000_000_001)
    assert early < late
    assert ulid_time_ms(late) == 1_800_000_000_001


def test_a_clock_step_backwards_never_breaks_the_order() -> None:
    later = new_ulid(now_ms=1_900_000_000_500)
    after_step_back = new_ulid(now_ms=1_900_000_000_000)
    assert after_step_back > later


def test_prefixed_ids_are_readable_and_crockford_encoded() -> None:
    value = new_id("msg")
    assert re.fullmatch(r"msg_[0-9A-HJKMNP-TV-Z]{26}", value)
