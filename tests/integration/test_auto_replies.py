"""Out of hours, a customer hears once per conversation cycle when the team is back, on their own
channel and in their language; the conversation is still queued; an opted-out channel hears nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain.messages import utcnow
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_ingest import sms

__all__ = ["hub_with_providers", "sandbox"]  # fixtures


def closed_now_schedule(schedule_id: str, language: str = "en") -> None:
    """Open one hour a day, starting six hours from now (UTC): closed now, whatever the time."""
    from chalicelib.services import business_hours

    start = (utcnow() + timedelta(hours=6)).replace(minute=0)
    hour = {"start": f"{start.hour:02d}:00", "end": f"{(start.hour + 1) % 24:02d}:00"}
    days = {day: [hour] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    business_hours.put_schedule(schedule_id, {"timezone": "UTC", "weekly": days, "default_language": language})


def texts(sandbox: ProviderSandbox) -> list[str]:
    return [r["request"]["Body"] for r in sandbox.records() if r["provider"] == "twilio"]


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def test_out_of_hours_the_customer_hears_once_when_the_team_is_back(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services.ingest import ingest

    closed_now_schedule("support-hours")
    configure(monkeypatch, schedules={"general": "support-hours"})
    workers = Workers(hub_with_providers)

    first = ingest(sms("SMooh-1", body="hello, anyone?"))
    workers.drain(until=lambda: conversation(first.conversation_id).status == "waiting")
    ingest(sms("SMooh-2", body="hello again"))
    workers.drain()

    [reply] = texts(sandbox)
    assert "closed right now" in reply and "(UTC)" in reply
    opening = (utcnow() + timedelta(hours=6)).strftime("%H:00")
    assert opening in reply
    held = conversation(first.conversation_id)
    assert held.status == "waiting", "the conversation is queued all the same"


def test_the_out_of_hours_reply_speaks_the_customers_language(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    closed_now_schedule("tr-hours", language="en")
    configure(monkeypatch, schedules={"general": "tr-hours"})
    known = ingest(sms("SMtr-0", sender="+905321234567", body="merhaba"))
    customers.patch_customer(known.customer_id, CustomerPatch(attributes={"language": "tr"}))
    workers = Workers(hub_with_providers)
    workers.drain()

    [reply] = texts(sandbox)
    assert "Şu anda kapalıyız" in reply


def test_a_customer_who_opted_out_gets_no_out_of_hours_reply(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.messages import Channel
    from chalicelib.services import consent
    from chalicelib.services.ingest import ingest

    closed_now_schedule("quiet-hours")
    configure(monkeypatch, schedules={"general": "quiet-hours"})
    first = ingest(sms("SMoo-1", body="hi"))
    consent.set_consent(first.customer_id, Channel.SMS, opted_out=True, at=utcnow())
    workers = Workers(hub_with_providers)
    workers.drain(until=lambda: conversation(first.conversation_id).status == "waiting")

    assert texts(sandbox) == []
