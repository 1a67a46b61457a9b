"""Routing against the AWS emulator, driven through the real workers and queues."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_ingest import sms


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def agent_state(agent_id: str) -> Any:
    from chalicelib.services import agents

    return agents.get_agent(agent_id)


def pending_offer(conversation_id: str) -> str | None:
    return conversation(conversation_id).offer_id


def test_inbound_message_is_offered_to_the_skilled_agent_and_accepted(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("generalist")
    make_agent("accountant", skills={"billing": 4})
    workers = Workers(hub)
    workers.drain()

    ref = ingest(sms("SMr1", body="Where is my invoice?"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)

    offer = routing.get_offer(pending_offer(ref.conversation_id))
    assert offer["agent_id"] == "accountant" and offer["queue"] == "billing"
    accepted = routing.accept_offer(offer["id"])
    assert accepted["status"] == "accepted"
    held = conversation(ref.conversation_id)
    assert (held.status, held.assigned_agent_id, held.offer_id) == ("assigned", "accountant", None)
    assert agent_state("accountant").load == {"sms": 1}
    assert agent_state("accountant").conversation_ids == [ref.conversation_id]
    assert routing.accept_offer(offer["id"])["status"] == "accepted", "accepting twice is idempotent"


def test_an_unanswered_offer_expires_keeps_its_place_and_skips_that_agent(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, offer_timeout_seconds=1)
    make_agent("slow")
    workers = Workers(hub)
    ref = ingest(sms("SMexp"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    first_offer = pending_offer(ref.conversation_id)
    sort_key = conversation(ref.conversation_id).task_sort_key
    make_agent("quick")

    workers.drain(until=lambda: pending_offer(ref.conversation_id) not in (None, first_offer), timeout=15)

    assert routing.get_offer(first_offer)["status"] == "expired"
    second = routing.get_offer(pending_offer(ref.conversation_id))
    assert second["agent_id"] == "quick"
    assert conversation(ref.conversation_id).task_sort_key == sort_key, "the task kept its place in line"
    assert agent_state("slow").load.get("sms", 0) == 0
    with pytest.raises(Exception, match="expired"):
        routing.accept_offer(first_offer)


def test_accept_and_timeout_racing_cannot_both_win(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, offer_timeout_seconds=1)
    make_agent("racer", capacity={"sms": 10})
    workers = Workers(hub)
    refs = [ingest(sms(f"SMrace{i}", sender=f"+1501712{3000 + i}")) for i in range(6)]
    workers.routing[0].poll_once()
    offers = [pending_offer(ref.conversation_id) for ref in refs]
    assert all(offers)

    time.sleep(0.95)  # right at the deadline: some accepts land before it, some after
    outcomes: dict[str, str] = {}

    def accept(offer_id: str) -> None:
        try:
            routing.accept_offer(offer_id)
            outcomes[offer_id] = "accepted"
        except Exception:
            outcomes.setdefault(offer_id, "refused")

    def expire(offer_id: str) -> None:
        time.sleep(0.05)
        routing.expire_offer(offer_id)

    threads = [threading.Thread(target=f, args=(o,)) for o in offers for f in (accept, expire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    workers.drain(until=lambda: all(routing.get_offer(o)["status"] != "pending" for o in offers), timeout=10)

    agent = agent_state("racer")
    for offer_id in offers:
        status = routing.get_offer(offer_id)["status"]
        assert status in ("accepted", "expired")
        assert (outcomes[offer_id] == "accepted") == (status == "accepted")
    accepted = [o for o in offers if routing.get_offer(o)["status"] == "accepted"]
    assert len(agent.conversation_ids) == len(accepted)
    held_or_reoffered = agent.load.get("sms", 0)
    assert held_or_reoffered >= len(accepted)


def test_concurrent_workers_never_exceed_capacity_or_double_assign(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import customers, routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, offer_timeout_seconds=60)
    for name in ("a", "b", "c"):
        make_agent(name, status="offline", capacity={"sms": 2})
    refs = [ingest(sms(f"SMcap{i}", sender=f"+1501713{4000 + i}")) for i in range(15)]
    workers = Workers(hub, routing_consumers=4)
    for worker in workers.routing:
        worker.start()
    barrier = threading.Barrier(3)

    def come_online(name: str) -> None:
        barrier.wait()
        make_agent(name, status="available", capacity={"sms": 2})

    threads = [threading.Thread(target=come_online, args=(n,)) for n in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            offered = [r for r in refs if pending_offer(r.conversation_id)]
            if len(offered) == 6:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # let any straggling match attempts finish before counting
    finally:
        for worker in workers.routing:
            worker.stop()

    offered = [r for r in refs if pending_offer(r.conversation_id)]
    assert len(offered) == 6, "every free slot got an offer promptly"
    offers = [routing.get_offer(pending_offer(r.conversation_id)) for r in offered]
    assert len({o["id"] for o in offers}) == 6
    for name in ("a", "b", "c"):
        state = agent_state(name)
        assert state.load.get("sms", 0) == 2 == len(state.offer_ids), name
    assert {o["agent_id"] for o in offers} == {"a", "b", "c"}
    waiting = [r for r in refs if conversation(r.conversation_id).status == "waiting"]
    assert len(waiting) == 15
    stats = {q["queue"]: q for q in routing.queue_stats()}
    assert stats["general"]["waiting"] == 9 and stats["general"]["offered"] == 6
    assert stats["general"]["agents"] == {"available": 3, "away": 0, "offline": 0}

    # Resolving frees a slot and the backlog drains into it.
    first = offers[0]
    routing.accept_offer(first["id"])
    customers.get_conversation(first["conversation_id"])
    routing.resolve(first["conversation_id"])
    Workers(hub).drain(until=lambda: agent_state(first["agent_id"]).load.get("sms", 0) == 2, timeout=15)
    assert len([r for r in refs if pending_offer(r.conversation_id)]) == 6


def test_backlog_is_served_by_priority_when_an_agent_comes_online(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.ingest import ingest

    configure(
        monkeypatch,
        rules=[{"name": "urgent", "when": {"keywords": ["urgent"]}, "priority": 9}],
    )
    workers = Workers(hub)
    calm = [ingest(sms(f"SMcalm{i}", sender=f"+1501714{5000 + i}", body="hello")) for i in range(3)]
    urgent = ingest(sms("SMurgent", sender="+15017146000", body="URGENT: locked out"))
    workers.drain()
    assert all(pending_offer(r.conversation_id) is None for r in [*calm, urgent])

    make_agent("solo", capacity={"sms": 2})
    workers.drain(until=lambda: agent_state("solo").load.get("sms", 0) == 2)

    offered = {r.conversation_id for r in [*calm, urgent] if pending_offer(r.conversation_id)}
    assert offered == {urgent.conversation_id, calm[0].conversation_id}


def test_sticky_routing_returns_the_customer_to_the_last_agent(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("first", capacity={"sms": 1})
    workers = Workers(hub)
    ref = ingest(sms("SMs1"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    routing.accept_offer(pending_offer(ref.conversation_id))
    routing.resolve(ref.conversation_id)
    make_agent("roomier", capacity={"sms": 5})
    workers.drain()

    ingest(sms("SMs2", body="me again"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)

    assert routing.get_offer(pending_offer(ref.conversation_id))["agent_id"] == "first"


def test_sticky_falls_back_after_the_wait_but_never_to_an_offline_agent(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, sticky_wait_seconds=1)
    make_agent("first")
    workers = Workers(hub)
    ref = ingest(sms("SMf1"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    routing.accept_offer(pending_offer(ref.conversation_id))
    routing.resolve(ref.conversation_id)
    make_agent("first", status="offline")
    make_agent("other", status="offline")
    workers.drain()

    ingest(sms("SMf2"))
    workers.drain()
    assert pending_offer(ref.conversation_id) is None
    make_agent("other", status="available")
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None, timeout=10)

    assert routing.get_offer(pending_offer(ref.conversation_id))["agent_id"] == "other"


def test_skills_relax_after_the_configured_wait(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, relax_after_seconds=[1, 2])
    make_agent("novice", skills={"billing": 1})
    workers = Workers(hub)
    ref = ingest(sms("SMskill", body="invoice question"))
    workers.drain()
    assert pending_offer(ref.conversation_id) is None, "billing 3 is required at first"

    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None, timeout=10)

    assert routing.get_offer(pending_offer(ref.conversation_id))["agent_id"] == "novice"


def test_going_offline_rescinds_offers_and_requeues_held_conversations_after_grace(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch, agent_grace_seconds=1, sticky_wait_seconds=30)
    make_agent("leaving", capacity={"sms": 2})
    workers = Workers(hub)
    held = ingest(sms("SMheld", sender="+15017150001"))
    offered = ingest(sms("SMoffered", sender="+15017150002"))
    workers.drain(until=lambda: pending_offer(offered.conversation_id) is not None)
    routing.accept_offer(pending_offer(held.conversation_id))
    pending = pending_offer(offered.conversation_id)

    routing.set_agent_status("leaving", routing.AgentStatus.OFFLINE)

    assert routing.get_offer(pending)["status"] == "rescinded"
    assert conversation(held.conversation_id).assigned_agent_id == "leaving", "kept during the grace period"
    workers.drain(until=lambda: conversation(held.conversation_id).status == "waiting", timeout=10)
    assert agent_state("leaving").load.get("sms", 0) == 0

    make_agent("helper")
    routing.set_agent_status("leaving", routing.AgentStatus.AVAILABLE)
    workers.drain(until=lambda: pending_offer(held.conversation_id) is not None, timeout=10)
    assert routing.get_offer(pending_offer(held.conversation_id))["agent_id"] == "leaving", "marked to return"


def test_transfer_requeues_with_history_to_the_named_agent(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import customers, routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("tier1")
    workers = Workers(hub)
    ref = ingest(sms("SMt1"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    routing.accept_offer(pending_offer(ref.conversation_id))
    make_agent("tier2", capacity={"sms": 1})

    result = routing.transfer(ref.conversation_id, "tier2", None, None)

    assert result["task"]["reason"] == "transfer"
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    assert routing.get_offer(pending_offer(ref.conversation_id))["agent_id"] == "tier2"
    assert agent_state("tier1").load.get("sms", 0) == 0
    messages, _ = customers.list_messages(ref.conversation_id, 50, None)
    assert [m.provider_message_id for m in messages] == ["SMt1"]


def test_a_crash_between_steps_or_a_duplicate_delivery_loses_nothing(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import aws
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("steady")
    workers = Workers(hub)
    workers.drain()
    crashes = {"left": 1}

    def crash_once(**kwargs: Any) -> None:
        items = kwargs["params"]["TransactItems"]
        if crashes["left"] and any("OFFER#" in str(item) for item in items):
            crashes["left"] -= 1
            raise ConnectionError("injected: worker lost its connection mid-assignment")

    aws.client("dynamodb").meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", crash_once)
    sqs = hub.client("sqs")
    # SQS redelivers a failed record after the visibility timeout; make that 1 s for this test.
    sqs.set_queue_attributes(QueueUrl=hub.routing_queue_url, Attributes={"VisibilityTimeout": "1"})
    ref = ingest(sms("SMcrash"))

    assert workers.routing[0].poll_once() == 1  # crashes mid-assignment: the record stays on the queue
    assert crashes["left"] == 0 and pending_offer(ref.conversation_id) is None
    # Queued and offered in one transaction: the crash left nothing half written.
    assert conversation(ref.conversation_id).status == "open"

    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None, timeout=15)
    # The same inbound task delivered again changes nothing.
    ingest(sms("SMcrash"))
    workers.drain()

    offer = routing.get_offer(pending_offer(ref.conversation_id))
    assert offer["agent_id"] == "steady"
    assert agent_state("steady").load == {"sms": 1}
    from chalicelib.store import routing as routing_store

    # One task: held in the one pending offer while offered, none left waiting in the queue.
    assert routing_store.all_tasks("general") == []
    assert routing_store.get_offer(offer["id"]).task.conversation_id == ref.conversation_id


def test_auto_accept_agents_get_the_conversation_without_a_click(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("eager", auto_accept=True)
    workers = Workers(hub)
    ref = ingest(sms("SMauto"))

    workers.drain(until=lambda: conversation(ref.conversation_id).status == "assigned")

    assert conversation(ref.conversation_id).assigned_agent_id == "eager"
    assert agent_state("eager").conversation_ids == [ref.conversation_id]
    assert routing.queue_stats()[0]["waiting"] == 0


def test_transfer_to_a_skill_set_skips_the_transferring_agent(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    configure(monkeypatch)
    make_agent("first-line", skills={"spanish": 5})
    workers = Workers(hub)
    ref = ingest(sms("SMskills"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    routing.accept_offer(pending_offer(ref.conversation_id))
    make_agent("no-spanish", capacity={"sms": 5})
    make_agent("spanish-speaker", skills={"spanish": 4})

    routing.transfer(ref.conversation_id, None, {"spanish": 4}, None)
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)

    assert routing.get_offer(pending_offer(ref.conversation_id))["agent_id"] == "spanish-speaker"
    with pytest.raises(Exception, match="only an assigned one"):
        routing.transfer(ref.conversation_id, None, {"spanish": 1}, None)


def test_waiting_tasks_behind_many_pending_offers_are_still_found(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offered tasks now leave the queue with their offer; tasks offered before that (stored in
    place, status offered) are read past, within the head's bounded pages."""
    from datetime import timedelta

    from chalicelib.domain.messages import utcnow
    from chalicelib.domain.routing import Task, TaskStatus
    from chalicelib.store import routing as routing_store
    from chalicelib.store import table

    now = utcnow()
    for index in range(20):
        task = Task(
            conversation_id=f"conv_{index}",
            customer_id=f"cus_{index}",
            channel="sms",
            queue="general",
            priority=5,
            enqueued_at=now + timedelta(milliseconds=index),
            enqueue_id=f"{index:04d}",
            status=TaskStatus.OFFERED if index < 15 else TaskStatus.WAITING,
        )
        table.transact([table.put_op(routing_store.task_item(task))])

    waiting = routing_store.waiting_tasks("general", 0, 5)

    assert [task.conversation_id for task in waiting] == [f"conv_{i}" for i in range(15, 20)]


def test_offers_keep_the_stored_item_format_and_read_back_as_the_same_offer(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.offers import OfferStatus
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest
    from chalicelib.store import keys, table
    from chalicelib.store import routing as routing_store

    configure(monkeypatch)
    make_agent("keeper")
    workers = Workers(hub)
    ref = ingest(sms("SMformat"))
    workers.drain(until=lambda: pending_offer(ref.conversation_id) is not None)
    offer_id = str(pending_offer(ref.conversation_id))

    item = table.get(keys.offer_key(offer_id))
    assert item is not None
    assert set(item) == {
        *keys.offer_key(offer_id),
        "type",
        "id",
        "agent_id",
        "conversation_id",
        "customer_id",
        "channel",
        "queue",
        "task_sort_key",
        "task_shard",
        "task",  # the task itself, out of its queue while offered
        "status",
        "created_at",
        "expires_at",
    }
    assert item["task"]["conversation_id"] == ref.conversation_id and item["task"]["status"] == "offered"
    assert (item["type"], item["status"], item["agent_id"], item["channel"]) == ("offer", "pending", "keeper", "sms")
    assert item["created_at"].endswith("+00:00") and item["expires_at"].endswith("+00:00")
    offer = routing_store.get_offer(offer_id)
    assert offer is not None and offer.status is OfferStatus.PENDING
    assert routing_store.offer_item(offer) == item, "model -> item is the inverse of item -> model"

    routing.accept_offer(offer_id)

    decided = table.get(keys.offer_key(offer_id))
    assert decided is not None and decided["status"] == "accepted" and "decided_at" in decided
    accepted = routing_store.get_offer(offer_id)
    assert accepted is not None and routing_store.offer_item(accepted) == decided
    assert routing.get_offer(offer_id)["decided_at"] == decided["decided_at"]


def test_routing_config_is_read_from_the_settings_and_cached_until_cleared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import json

    from chalicelib.domain.routing import RoutingConfig
    from chalicelib.services.routing_config import routing_config

    path = tmp_path / "routing.json"
    path.write_text(json.dumps({"offer_timeout_seconds": 7}))
    monkeypatch.delenv("ROUTING_CONFIG", raising=False)
    monkeypatch.setenv("ROUTING_CONFIG_FILE", str(path))
    routing_config.cache_clear()
    try:
        assert routing_config().offer_timeout_seconds == 7
        monkeypatch.setenv("ROUTING_CONFIG", json.dumps({"offer_timeout_seconds": 9}))
        assert routing_config().offer_timeout_seconds == 7, "cached until cleared"
        routing_config.cache_clear()
        assert routing_config().offer_timeout_seconds == 9, "the JSON setting wins over the file"
        monkeypatch.delenv("ROUTING_CONFIG")
        monkeypatch.delenv("ROUTING_CONFIG_FILE")
        routing_config.cache_clear()
        assert routing_config() == RoutingConfig()
    finally:
        routing_config.cache_clear()
