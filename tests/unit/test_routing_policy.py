"""The routing policy, pure: rules to queue/priority/skills, eligibility, who goes first; offers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.api.models import offer_view
from chalicelib.domain.agents import Agent, AgentStatus
from chalicelib.domain.offers import RELEASES, Offer, OfferStatus
from chalicelib.domain.routing import (
    RoutingConfig,
    RoutingRule,
    RuleMatch,
    Task,
    TaskStatus,
    choose_agent,
    choose_tasks,
    classify,
    effective_skills,
    eligible,
    next_recheck,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = RoutingConfig(
    queues=["general", "billing", "vip"],
    rules=[
        RoutingRule(name="vip", when=RuleMatch(attributes={"tier": ["gold", "platinum"]}), queue="vip", priority=8),
        RoutingRule(
            name="billing words", when=RuleMatch(keywords=["invoice", "refund"]), queue="billing", skills={"billing": 3}
        ),
        RoutingRule(name="turkish", when=RuleMatch(attributes={"lang": "tr"}), skills={"turkish": 5}),
        RoutingRule(name="email is slower", when=RuleMatch(channels=["email"]), priority=2),
    ],
    relax_after_seconds=[60, 180],
)


def agent(agent_id: str, **changes: object) -> Agent:
    base = {
        "id": agent_id,
        "name": agent_id,
        "status": AgentStatus.AVAILABLE,
        "status_changed_at": T0 - timedelta(minutes=10),
        "capacity": {"sms": 3, "whatsapp": 3, "email": 5},
        "created_at": T0,
        "updated_at": T0,
    }
    return Agent.model_validate({**base, **changes})


def task(**changes: object) -> Task:
    base = {
        "conversation_id": "conv_1",
        "customer_id": "cus_1",
        "channel": "sms",
        "queue": "general",
        "priority": 5,
        "enqueued_at": T0,
        "enqueue_id": "01A",
    }
    return Task.model_validate({**base, **changes})


def test_rules_pick_queue_priority_and_merge_skills() -> None:
    result = classify("sms", {"tier": "gold", "lang": "tr"}, "I need a REFUND please", CONFIG)
    assert result.queue == "vip"  # the first matching rule that names a queue
    assert result.priority == 8
    assert result.skills == {"billing": 3, "turkish": 5}


def test_keywords_match_whole_words_only() -> None:
    assert classify("sms", {}, "my invoices", CONFIG).queue == "general"
    assert classify("sms", {}, "Invoice #12?", CONFIG).queue == "billing"


def test_no_rule_means_the_default_queue_and_priority() -> None:
    result = classify("whatsapp", {}, "hello", CONFIG)
    assert (result.queue, result.priority, result.skills) == ("general", 5, {})


def test_skills_relax_levels_first_then_entirely() -> None:
    waiting = task(skills={"turkish": 5, "billing": 3})
    assert effective_skills(waiting, T0 + timedelta(seconds=59), CONFIG) == {"turkish": 5, "billing": 3}
    assert effective_skills(waiting, T0 + timedelta(seconds=60), CONFIG) == {"turkish": 1, "billing": 1}
    assert effective_skills(waiting, T0 + timedelta(seconds=180), CONFIG) == {}


def test_eligibility_needs_availability_capacity_skills_and_no_exclusion() -> None:
    now = T0 + timedelta(seconds=1)
    needs_turkish = task(skills={"turkish": 5})
    assert eligible(agent("a", skills={"turkish": 5}), needs_turkish, now, CONFIG)
    assert not eligible(agent("b", skills={"turkish": 4}), needs_turkish, now, CONFIG)
    assert not eligible(agent("c", skills={"turkish": 5}, status=AgentStatus.AWAY), needs_turkish, now, CONFIG)
    assert not eligible(agent("d", skills={"turkish": 5}, load={"sms": 3}), needs_turkish, now, CONFIG)
    assert not eligible(agent("e", skills={"turkish": 5}, capacity={"email": 5}), needs_turkish, now, CONFIG)
    excluded = task(skills={"turkish": 5}, excluded_agents=["a"])
    assert not eligible(agent("a", skills={"turkish": 5}), excluded, now, CONFIG)


def test_single_channel_agents_take_one_channel_at_a_time() -> None:
    busy_on_email = agent("a", multi_channel=False, load={"email": 1}, total_load=1, active_channel="email")
    assert not eligible(busy_on_email, task(channel="sms"), T0, CONFIG)
    assert eligible(busy_on_email, task(channel="email"), T0, CONFIG)
    assert eligible(agent("b", multi_channel=True, load={"email": 1}, total_load=1), task(channel="sms"), T0, CONFIG)


def test_most_spare_capacity_wins_then_longest_idle() -> None:
    fuller = agent("fuller", load={"sms": 2}, total_load=2)
    idle_long = agent("idle-long", last_offer_at=T0 - timedelta(minutes=5))
    idle_short = agent("idle-short", last_offer_at=T0 - timedelta(minutes=1))
    ranked = choose_agent(task(), [fuller, idle_short, idle_long], T0, CONFIG)
    assert [a.id for a in ranked] == ["idle-long", "idle-short", "fuller"]


def test_sticky_task_waits_for_its_agent_then_falls_back() -> None:
    sticky = task(preferred_agent="returning", preferred_until=T0 + timedelta(seconds=30))
    others = [agent("returning", load={"sms": 2}, total_load=2), agent("free")]
    assert [a.id for a in choose_agent(sticky, others, T0 + timedelta(seconds=5), CONFIG)] == ["returning"]
    offline = [agent("returning", status=AgentStatus.OFFLINE), agent("free")]
    assert choose_agent(sticky, offline, T0 + timedelta(seconds=5), CONFIG) == []
    assert [a.id for a in choose_agent(sticky, offline, T0 + timedelta(seconds=31), CONFIG)] == ["free"]


def test_tasks_are_served_by_priority_then_age_and_offered_ones_are_skipped() -> None:
    old_low = task(conversation_id="old-low", priority=3, enqueue_id="01A")
    new_high = task(conversation_id="new-high", priority=8, enqueue_id="01C")
    old_high = task(conversation_id="old-high", priority=8, enqueue_id="01B")
    offered = task(conversation_id="offered", priority=9, enqueue_id="01A", status=TaskStatus.OFFERED)
    order = choose_tasks(agent("a"), [old_low, new_high, offered, old_high], T0, CONFIG)
    assert [t.conversation_id for t in order] == ["old-high", "new-high", "old-low"]


def test_next_recheck_is_the_next_relaxation_or_sticky_deadline() -> None:
    sticky = task(skills={"x": 2}, preferred_agent="a", preferred_until=T0 + timedelta(seconds=30))
    assert next_recheck(sticky, T0, CONFIG) == T0 + timedelta(seconds=30)
    assert next_recheck(sticky, T0 + timedelta(seconds=31), CONFIG) == T0 + timedelta(seconds=60)
    assert next_recheck(sticky, T0 + timedelta(seconds=500), CONFIG) is None


# An offer item exactly as the store has always written it (then decided: accepted).
STORED_OFFER = {
    "pk": "OFFER#ofr_01",
    "sk": "OFFER",
    "type": "offer",
    "id": "ofr_01",
    "agent_id": "a",
    "conversation_id": "conv_1",
    "customer_id": "cus_1",
    "channel": "sms",
    "queue": "general",
    "task_sort_key": "4#01A",
    "status": "accepted",
    "created_at": "2026-11-23T10:00:00+00:00",
    "expires_at": "2026-11-23T10:01:00.250000+00:00",
    "decided_at": "2026-11-23T10:00:12.500000+00:00",
}


def test_a_new_offer_is_pending_for_its_task() -> None:
    offer = Offer.of(task(), "a", "ofr_01", T0, T0 + timedelta(seconds=60))
    assert offer.status is OfferStatus.PENDING and offer.pending and offer.decided_at is None
    assert (offer.conversation_id, offer.customer_id, offer.channel) == ("conv_1", "cus_1", "sms")
    assert (offer.queue, offer.task_sort_key) == ("general", task().sort_key)
    assert not offer.due(T0 + timedelta(seconds=59))
    assert offer.due(T0 + timedelta(seconds=60)), "at expires_at it can no longer be accepted"


def test_a_stored_offer_reads_into_the_model_and_its_view_keeps_the_stored_strings() -> None:
    offer = Offer.model_validate(STORED_OFFER)
    assert offer.status is OfferStatus.ACCEPTED and not offer.pending
    assert offer_view(offer) == {
        field: STORED_OFFER.get(field)
        for field in (
            "id",
            "status",
            "agent_id",
            "conversation_id",
            "customer_id",
            "channel",
            "queue",
            "created_at",
            "expires_at",
            "decided_at",
        )
    }
    pending = Offer.model_validate({**STORED_OFFER, "status": "pending", "decided_at": None})
    assert offer_view(pending)["decided_at"] is None and offer_view(pending)["status"] == "pending"


def test_offer_statuses_are_the_five_the_store_writes() -> None:
    assert {status.value for status in OfferStatus} == {"pending", "accepted", "rejected", "expired", "rescinded"}
    assert set(RELEASES) == {OfferStatus.REJECTED, OfferStatus.EXPIRED, OfferStatus.RESCINDED}
    with pytest.raises(ValidationError):
        Offer.model_validate({**STORED_OFFER, "status": "withdrawn"})
