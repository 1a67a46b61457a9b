"""Analytics against hand-computed figures: a day replayed with a clock the test moves, through
the real workers, the moto server and the outbound sandbox.

Given a queue open Mon-Fri 09:00-17:00 UTC and an agent, a customer writes at 16:50 (cycle 1),
the agent accepts 30 s later, answers at +120 s, the customer writes again at +300 s, the agent
answers at +900 s (17:05, after closing) and resolves at +1200 s; the customer comes back at
17:20 (a reopen: cycle 2, answered automatically out of hours), and so on. A WhatsApp customer
is handed over by the assistant after two messages it could not answer (cycle 3), another is
answered by the assistant alone (cycle 4). Every figure below is computed by hand from those times.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_assistant import ORDER_STATUS
from tests.integration.test_ingest import sms

__all__ = ["hub_with_providers", "sandbox"]  # fixtures

OFFICE = {
    "timezone": "UTC",
    "weekly": {day: [{"start": "09:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")},
}


class MovableClock:
    """The hub's clock (chalicelib.domain.clock.now), moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def set(self, start: datetime, seconds: float) -> None:
        self.at = start + timedelta(seconds=seconds)


def next_monday_1650() -> datetime:
    """A Monday 16:50 UTC at least a day ahead (ids only move forward, so the clock must too)."""
    day = (datetime.now(UTC) + timedelta(days=1)).date()
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 16, 50, tzinfo=UTC)


@pytest.fixture
def scenario(hub_with_providers: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MovableClock, Workers]]:
    from chalicelib.domain import clock as hub_clock
    from chalicelib.domain import ids
    from chalicelib.services import business_hours, knowledge

    clock = MovableClock(next_monday_1650())
    monkeypatch.setattr(hub_clock, "now", clock.now)
    # Ids only move forward: a generator of the test's own, so later tests' ids follow the real clock.
    monkeypatch.setattr(ids, "_generator", ids.UlidGenerator())
    business_hours.put_schedule("office", OFFICE)
    knowledge.put_entry("order-status", ORDER_STATUS)
    configure(
        monkeypatch,
        queues=["general", "bots"],
        rules=[{"name": "whatsapp", "when": {"channels": ["whatsapp"]}, "queue": "bots"}],
        control={"queues": {"bots": {"default": "assistant"}}},
        schedules={"general": "office"},
        offer_timeout_seconds=900,
        sticky_wait_seconds=0,
        relax_after_seconds=[],
    )
    make_agent("ada")
    yield clock, Workers(hub_with_providers)


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def offered(conversation_id: str) -> str:
    offer_id = conversation(conversation_id).offer_id
    assert offer_id, "the conversation has an offer"
    return str(offer_id)


def reply(conversation_id: str, text: str) -> None:
    from chalicelib.http.replies import send_reply

    assert send_reply(conversation_id, {"agent_id": "ada", "body": text}).status_code == 201


def figures(start: datetime, **query: Any) -> dict[str, Any]:
    from chalicelib.services import analytics

    return analytics.summary(
        (start - timedelta(hours=1)).isoformat(),
        (start + timedelta(hours=4)).isoformat(),
        query.get("tz", "UTC"),
        query.get("group_by"),
        query.get("service_level"),
    )


def test_every_metric_matches_the_hand_computed_day(
    scenario: tuple[MovableClock, Workers], sandbox: ProviderSandbox
) -> None:
    from chalicelib.domain.agents import AgentStatus
    from chalicelib.services import analytics, routing
    from chalicelib.services.ingest import ingest
    from chalicelib.store import agents as agent_store

    clock, workers = scenario
    t0 = clock.at

    # Cycle 1 (SMS, queue general, 16:50).
    first = ingest(sms("SMan-1", body="my invoice is wrong"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    live = analytics.realtime()
    [general] = [row for row in live["queues"] if row["queue"] == "general"]
    assert (general["open"], general["offered"], general["unassigned"]) == (1, 1, 1)
    clock.set(t0, 30)
    routing.accept_offer(offered(first.conversation_id))
    [general] = [row for row in analytics.realtime()["queues"] if row["queue"] == "general"]
    assert (general["assigned"], general["unassigned"]) == (1, 0)
    clock.set(t0, 120)
    reply(first.conversation_id, "Let me look.")
    clock.set(t0, 300)
    ingest(sms("SMan-2", body="still there?"))
    workers.drain()
    clock.set(t0, 900)
    reply(first.conversation_id, "Fixed it.")
    clock.set(t0, 1200)
    routing.resolve(first.conversation_id)

    # Cycle 2: the same customer comes back at 17:20, out of hours (an automatic answer goes out).
    clock.set(t0, 1800)
    ingest(sms("SMan-3", body="one more thing"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    clock.set(t0, 1860)
    routing.accept_offer(offered(first.conversation_id))
    clock.set(t0, 2100)
    reply(first.conversation_id, "Sure.")
    clock.set(t0, 2400)
    routing.resolve(first.conversation_id)

    # Cycle 3 (WhatsApp, queue bots): the assistant misses twice and hands over at +3660.
    clock.set(t0, 3600)
    third = ingest(sms("SMan-4", sender="whatsapp:+15017120033", body="my car broke down on the highway"))
    workers.drain()
    clock.set(t0, 3660)
    ingest(sms("SMan-5", sender="whatsapp:+15017120033", body="the engine makes a strange noise"))
    workers.drain(until=lambda: conversation(third.conversation_id).offer_id is not None)
    clock.set(t0, 3690)
    routing.accept_offer(offered(third.conversation_id))
    clock.set(t0, 3800)
    reply(third.conversation_id, "A tow truck is on its way.")
    clock.set(t0, 4000)
    routing.resolve(third.conversation_id)

    # Cycle 4 (WhatsApp): the assistant answers and the conversation is resolved without a person.
    clock.set(t0, 4200)
    fourth = ingest(sms("SMan-6", sender="whatsapp:+15017120044", body="where is my order?"))
    workers.drain()
    clock.set(t0, 4300)
    routing.resolve(fourth.conversation_id)
    workers.drain()

    total = figures(t0)["total"]
    assert (total["cycles"], total["queued"], total["resolved"], total["resolved_without_human"]) == (4, 3, 4, 1)
    assert total["offers"] == {"created": 3, "accepted": 3, "rejected": 0, "expired": 0}
    assert total["transfers"] == 0

    def exact(name: str) -> tuple[int, float | None]:
        return total[name]["count"], total[name]["mean"]

    # First response: 120 (cycle 1), 300 (cycle 2), 200 (cycle 3: 3600 -> 3800, the bot's time included).
    assert exact("first_response") == (3, round((120 + 300 + 200) / 3, 1))
    # In business time: 120, 0 (17:20-17:25 is closed), 0 (17:50-17:53 is after hours, but queue bots has no
    # schedule: always open) -> 200.
    assert (total["first_response"]["business"]["count"], total["first_response"]["business"]["mean"]) == (
        3,
        round((120 + 0 + 200) / 3, 1),
    )
    assert exact("first_bot_response") == (2, 0.0), "the assistant answered cycles 3 and 4 at once"
    assert exact("next_reply") == (1, 600.0), "16:55 -> 17:05"
    assert total["next_reply"]["business"]["mean"] == 300.0, "16:55 -> 17:00 is open, 17:00 -> 17:05 closed"
    assert exact("queue_wait") == (3, round((30 + 60 + 30) / 3, 1))
    assert exact("handle_time") == (3, round((1170 + 540 + 310) / 3, 1))
    assert total["handle_time"]["business"]["mean"] == round((570 + 0 + 310) / 3, 1)
    assert exact("resolution_time") == (4, round((1200 + 600 + 400 + 100) / 4, 1))
    assert total["resolution_time"]["business"]["mean"] == round((600 + 0 + 400 + 100) / 4, 1)
    p50 = total["first_response"]["p50"]
    assert 200 * 0.75 <= p50 <= 200 * 1.25, f"p50 {p50} within one bucket of the true median 200"

    assert total["service_level"]["of"] == 3 and total["service_level"]["ratio"] == 0.0, "none within 60 s"
    within = figures(t0, service_level="250")["total"]["service_level"]
    assert within["answered_within"] == 2 and within["ratio"] == round(2 / 3, 4), "120 and 200 s, not 300 s"

    by_channel = {group["channel"]: group["metrics"] for group in figures(t0, group_by="channel")["groups"]}
    assert (by_channel["sms"]["cycles"], by_channel["whatsapp"]["cycles"]) == (2, 2)
    assert by_channel["whatsapp"]["resolved_without_human"] == 1
    by_hour = {group["hour"]: group["metrics"]["cycles"] for group in figures(t0, group_by="hour")["groups"]}
    hour = f"{t0:%Y-%m-%d}T"
    assert by_hour == {f"{hour}16": 1, f"{hour}17": 2, f"{hour}18": 1}, "each cycle in the hour it started"
    istanbul = figures(t0, group_by="hour", tz="Europe/Istanbul")["groups"]
    assert {group["hour"][-2:] for group in istanbul} == {"19", "20", "21"}, "UTC+3"
    day = f"{t0:%Y-%m-%d}"
    whole_day = analytics.summary(day, f"{t0 + timedelta(days=1):%Y-%m-%d}", "UTC", "day", None)
    [only] = whole_day["groups"]
    assert only["day"] == day and only["metrics"] == total, "the daily counts say what the hourly ones say"
    assert whole_day["cost"]["items_read"] <= 4, "a whole day in ANALYTICS_TIMEZONE is one item per shard"
    elsewhere = analytics.summary(day, f"{t0 + timedelta(days=1):%Y-%m-%d}", "America/New_York", None, None)
    assert elsewhere["total"]["cycles"] == 4, "16:50-18:00 UTC is the same New York day"
    [agent] = figures(t0, group_by="agent")["groups"]
    assert (
        agent["agent"] == "ada" and agent["metrics"]["resolved"] == 3 and agent["metrics"]["handle_time"]["count"] == 3
    )

    # Drill-down: the cycles behind "first response at least 150 s" are cycles 2 and 3.
    window = {"from": (t0 - timedelta(hours=1)).isoformat(), "to": (t0 + timedelta(hours=4)).isoformat()}
    slow = analytics.cycles({**window, "metric": "first_response", "min": "150"})["cycles"]
    assert sorted(row["first_response_seconds"] for row in slow) == [200.0, 300.0]
    reopened = [row for row in analytics.cycles(window)["cycles"] if row["conversation_id"] == first.conversation_id]
    assert len(reopened) == 2 and reopened[0]["id"] != reopened[1]["id"], "a reopen is a new cycle with its own id"
    assert reopened[1]["automatic_messages"] == 1 and reopened[1]["first_response_seconds"] == 300.0
    handed = [row for row in analytics.cycles(window)["cycles"] if row["conversation_id"] == third.conversation_id]
    assert handed[0]["bot_messages"] >= 2 and handed[0]["resolved_by"] == "agent"

    paged: list[str] = []
    cursor = None
    for _ in range(20):
        page = analytics.cycles({**window, "cursor": cursor}, limit=1)
        paged += [row["id"] for row in page["cycles"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(paged) == len(set(paged)) == 4, "one page at a time, each cycle once"

    text, _ = analytics.cycles_csv(window)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4 and {row["channel"] for row in rows} == {"sms", "whatsapp"}
    assert sorted(float(row["resolution_time_seconds"]) for row in rows) == [100.0, 400.0, 600.0, 1200.0]

    live = analytics.realtime()
    assert live["totals"]["open"] == 0 and live["totals"]["waiting"] == 0, "every cycle resolved"

    def roster() -> dict[str, dict[str, int]]:
        return {row.pop("channel"): row for row in analytics.realtime()["agents"]}

    def counted_by_hand() -> dict[str, int]:
        statuses = [agent.status.value for agent in agent_store.all_agents()]
        return {status: statuses.count(status) for status in ("available", "away", "offline")}

    assert roster()["all"] == counted_by_hand() and roster()["all"]["available"] == 1
    routing.set_agent_status("ada", AgentStatus.AWAY)
    make_agent("bob", status="offline", capacity={"webchat": 1})
    now = roster()
    assert now["all"] == counted_by_hand() and now["all"]["available"] == 0 and now["all"]["away"] == 1
    assert now["webchat"] == {"available": 0, "away": 0, "offline": 1} and now["sms"]["away"] == 1
