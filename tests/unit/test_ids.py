"""Given ids made at arrival, when sorted as strings, they are in arrival order."""

from __future__ import annotations

import re

from chalicelib.domain.ids import UlidGenerator, new_id, new_ulid, ulid_time_ms


def test_ulids_are_strictly_increasing_within_one_millisecond() -> None:
    generate = UlidGenerator()
    ids = [generate(now_ms=1_700_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_ulids_sort_by_time_and_carry_it() -> None:
    generate = UlidGenerator()
    early, late = generate(now_ms=1_800_000_000_000), generate(now_ms=1_800_000_000_001)
    assert early < late
    assert ulid_time_ms(late) == 1_800_000_000_001


def test_a_clock_step_backwards_never_breaks_the_order() -> None:
    generate = UlidGenerator()
    later = generate(now_ms=1_900_000_000_500)
    after_step_back = generate(now_ms=1_900_000_000_000)
    assert after_step_back > later


def test_prefixed_ids_are_readable_and_crockford_encoded() -> None:
    value = new_id("msg")
    assert re.fullmatch(r"msg_[0-9A-HJKMNP-TV-Z]{26}", value)


def test_the_process_wide_generator_follows_the_clock() -> None:
    import time

    before = int(time.time() * 1000)
    assert abs(ulid_time_ms(new_ulid()) - before) < 5000
