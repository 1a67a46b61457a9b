"""The built-in assistant through the real workers: it answers a known question in Turkish and in
English on the customer's channel, and hands over to a person (with what it gathered) when asked
("temsilci"), or after two messages it could not answer."""

from __future__ import annotations

from typing import Any

import pytest

from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_ingest import sms

__all__ = ["hub_with_providers", "sandbox"]  # fixtures

ORDER_STATUS = {
    "questions": [
        {"language": "tr", "text": "Siparişim nerede?"},
        {"language": "tr", "text": "Kargom ne zaman gelir?"},
        {"language": "en", "text": "Where is my order?"},
        {"language": "en", "text": "When will my package arrive?"},
    ],
    "answers": {
        "tr": "Siparişinizi hesabınızdaki Siparişlerim sayfasından takip edebilirsiniz.",
        "en": "You can track your order on the My Orders page of your account.",
    },
    "links": [{"url": "https://shop.example.com/orders", "title": "My orders"}],
    "intent": "order_status",
}
OPENING_HOURS = {
    "questions": [
        {"language": "tr", "text": "Çalışma saatleriniz nedir?"},
        {"language": "en", "text": "What are your opening hours?"},
    ],
    "answers": {"tr": "Hafta içi 09:00-18:00 arası açığız.", "en": "We are open on weekdays from 9 to 6."},
    "intent": "opening_hours",
}


@pytest.fixture
def assistant(hub_with_providers: Hub, monkeypatch: pytest.MonkeyPatch) -> Workers:
    from chalicelib.services import knowledge

    knowledge.put_entry("order-status", ORDER_STATUS)
    knowledge.put_entry("opening-hours", OPENING_HOURS)
    configure(monkeypatch, control={"default": "assistant"})
    make_agent("grace")
    return Workers(hub_with_providers)


def texts_to(sandbox: ProviderSandbox, number: str) -> list[str]:
    return [
        r["request"]["Body"] for r in sandbox.records() if r["provider"] == "twilio" and r["request"]["To"] == number
    ]


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def test_a_known_question_is_answered_in_turkish_and_in_english(assistant: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.ingest import ingest

    turkish = ingest(sms("SMas-tr", sender="+905321112233", body="SİPARİŞİM NEREDE?"))
    english = ingest(sms("SMas-en", sender="+15017120001", body="where's my order??"))
    assistant.drain(until=lambda: texts_to(sandbox, "+905321112233") and texts_to(sandbox, "+15017120001"))

    [answer_tr] = texts_to(sandbox, "+905321112233")
    assert answer_tr.startswith("Siparişinizi hesabınızdaki") and "https://shop.example.com/orders" in answer_tr
    assert '"temsilci" yazın' in answer_tr, "a person is always offered"
    [answer_en] = texts_to(sandbox, "+15017120001")
    assert answer_en.startswith("You can track your order") and 'Type "agent"' in answer_en
    for ref in (turkish, english):
        held = conversation(ref.conversation_id)
        assert held.control.controller.integration_id == "assistant"
        assert (held.status, held.offer_id) == ("open", None), "no routing task while the assistant answers"


def test_temsilci_hands_over_to_a_person_with_the_whole_cycle(assistant: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services import handoff
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMho-1", sender="+905321114455", body="Siparişim nerede?"))
    assistant.drain(until=lambda: len(texts_to(sandbox, "+905321114455")) == 1)
    ingest(sms("SMho-2", sender="+905321114455", body="Temsilciyle görüşmek istiyorum"))
    assistant.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)

    handing = texts_to(sandbox, "+905321114455")[-1]
    assert "temsilciye aktarıyorum" in handing
    held = conversation(first.conversation_id)
    assert held.control.controller.kind == "humans" and held.control.reason == "the customer asked for a person"
    packet = handoff.packet(first.conversation_id)
    bodies = [m["body"] for m in packet["messages"] if m["direction"] != "event"]
    assert bodies[0] == "Siparişim nerede?" and "Temsilciyle görüşmek istiyorum" in bodies
    assert len(bodies) == 4, "both customer messages and both assistant answers reach the agent"
    assert "asked for a person" in packet["control"]["summary"]


def test_two_unanswered_messages_go_to_a_person(assistant: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMun-1", sender="+15017129001", body="my car broke down on the highway"))
    assistant.drain(until=lambda: len(texts_to(sandbox, "+15017129001")) == 1)
    assert conversation(first.conversation_id).control.controller.integration_id == "assistant"
    assert texts_to(sandbox, "+15017129001")[0].startswith("Sorry, I could not find an answer")

    ingest(sms("SMun-2", sender="+15017129001", body="can you send a tow truck"))
    assistant.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)

    held = conversation(first.conversation_id)
    assert held.control.controller.kind == "humans" and "could not answer 2 messages" in held.control.reason
    assert held.control.metadata["unanswered"] == ["my car broke down on the highway"]
