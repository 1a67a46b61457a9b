"""Helpers for routing tests: configure routing, create agents, run the real workers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from local.worker import QueueWorker
from tests.conftest import Hub

FAST = {
    "queues": ["general", "billing"],
    "rules": [{"name": "billing", "when": {"keywords": ["invoice"]}, "queue": "billing", "skills": {"billing": 3}}],
    "offer_timeout_seconds": 2,
    "sticky_wait_seconds": 2,
    "relax_after_seconds": [600, 900],
    "agent_grace_seconds": 1,
}


def configure(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> None:
    from chalicelib.services.routing_config import routing_config

    monkeypatch.setenv("ROUTING_CONFIG", json.dumps({**FAST, **overrides}))
    routing_config.cache_clear()


def make_agent(agent_id: str, status: str = "available", **profile: Any) -> Any:
    from chalicelib.domain.agents import AgentProfile, AgentStatus
    from chalicelib.services import agents, routing

    fields = {"name": agent_id, "capacity": {"sms": 2, "whatsapp": 2, "email": 2}, **profile}
    agents.put_agent(agent_id, AgentProfile.model_validate(fields))
    return routing.set_agent_status(agent_id, AgentStatus(status))


class Workers:
    """The routing, timer and CRM-event handlers, fed from their queues as Lambda would feed them."""

    def __init__(self, hub: Hub, routing_consumers: int = 1) -> None:
        from handlers import crm_events, routing, timers

        sqs = hub.client("sqs")
        r = hub.resources

        def worker(env: str, handler: Callable[..., Any], name: str) -> QueueWorker:
            return QueueWorker(sqs, r[env], r[env.replace("_URL", "_ARN")], handler, name)

        self.routing = [worker("ROUTING_QUEUE_URL", routing.handler, f"routing-{i}") for i in range(routing_consumers)]
        self.timers = worker("TIMER_QUEUE_URL", timers.handler, "timers")
        self.crm = worker("CRM_EVENTS_QUEUE_URL", crm_events.handler, "crm")

    def all(self) -> list[QueueWorker]:
        return [*self.routing, self.timers, self.crm]

    def drain(self, until: Callable[[], bool] | None = None, timeout: float = 20, quiet: float = 0.6) -> None:
        """Poll every queue until `until()` holds (or, without it, until all stay empty for `quiet` s)."""
        deadline = time.monotonic() + timeout
        last_work = time.monotonic()
        while time.monotonic() < deadline:
            handled = sum(worker.poll_once() for worker in self.all())
            if handled:
                last_work = time.monotonic()
            if until is not None and until():
                return
            if until is None and time.monotonic() - last_work >= quiet:
                return
            if not handled:
                time.sleep(0.05)
        raise AssertionError("workers did not reach the expected state in time")
