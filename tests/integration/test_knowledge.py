"""The knowledge base against the AWS emulator: entries written and read over the REST API,
matched with `GET /v1/knowledge?query=...`, and the assistant's cached copy kept fresh by the
version item: one GetItem when nothing changed, a reload when another instance wrote."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from tests.conftest import Hub

API = {"Authorization": "Bearer test-api-key", "Content-Type": "application/json"}

ORDER_STATUS = {
    "intent": "order_status",
    "questions": [
        {"language": "tr", "text": "Siparişim nerede?"},
        {"language": "tr", "text": "Kargom nerede?"},
        {"language": "en", "text": "Where is my order?"},
        {"language": "en", "text": "Where is my package?"},
    ],
    "answers": {
        "tr": "Siparişinizi https://shop.example.com/siparisler adresinden izleyebilirsiniz.",
        "en": "You can follow your order at https://shop.example.com/orders.",
    },
    "links": [{"url": "https://shop.example.com/orders", "title": "My orders"}],
}
PASSWORD_RESET = {
    "intent": "password_reset",
    "questions": [
        {"language": "tr", "text": "Şifremi unuttum"},
        {"language": "en", "text": "I forgot my password"},
        {"language": "en", "text": "How do I reset my password?"},
    ],
    "answers": {
        "tr": "Giriş sayfasında 'Şifremi unuttum'a dokunun.",
        "en": "Tap 'Forgot password' on the sign-in page.",
    },
}
OPENING_HOURS = {
    "intent": "opening_hours",
    "questions": [
        {"language": "tr", "text": "Çalışma saatleriniz nedir?"},
        {"language": "en", "text": "What are your opening hours?"},
    ],
    "answers": {"tr": "Her gün 09:00-18:00 arası açığız.", "en": "We are open every day from 9 am to 6 pm."},
}


@pytest.fixture
def client(hub: Hub) -> Iterator[Client]:
    import app
    from chalicelib.services import knowledge

    knowledge.forget_cache()
    with Client(app.app) as test_client:
        yield test_client
    knowledge.forget_cache()


def put(client: Client, entry_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = client.http.put(f"/v1/knowledge/{entry_id}", headers=API, body=json.dumps(body))
    return response.status_code, json.loads(response.body or b"null")


def get(client: Client, path: str, **query: str) -> tuple[int, Any]:
    response = client.http.get(path + (f"?{urlencode(query)}" if query else ""), headers=API)
    return response.status_code, json.loads(response.body or b"null")


def count_requests() -> Counter[str]:
    from chalicelib import aws

    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    aws.client("dynamodb").meta.events.register("before-call", record)
    return calls


# --- The API ------------------------------------------------------------------------------------


def test_an_entry_is_created_replaced_read_and_deleted(client: Client) -> None:
    # When an entry is put, then put again with another answer
    status, created = put(client, "order-status", ORDER_STATUS)
    assert status == 201
    changed = {**ORDER_STATUS, "answers": {**ORDER_STATUS["answers"], "en": "Follow it in the app."}}
    status, replaced = put(client, "order-status", changed)
    assert status == 200

    # Then GET shows the latest, as PUT answered it
    status, read = get(client, "/v1/knowledge/order-status")
    assert status == 200 and read == replaced
    assert read["id"] == "order-status" and read["intent"] == "order_status"
    assert read["answers"]["en"] == "Follow it in the app." and read["questions"] == ORDER_STATUS["questions"]
    assert read["links"] == ORDER_STATUS["links"]
    assert read["updated_at"].endswith("Z") and created["updated_at"] <= read["updated_at"]
    # ...and what GET shows can be sent back as it is
    assert put(client, "order-status", read)[0] == 200

    # When it is deleted, it is gone
    response = client.http.delete("/v1/knowledge/order-status", headers=API)
    assert response.status_code == 204
    status, body = get(client, "/v1/knowledge/order-status")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert client.http.delete("/v1/knowledge/order-status", headers=API).status_code == 404


@pytest.mark.parametrize(
    ("entry_id", "body", "says"),
    [
        ("order-status", {**ORDER_STATUS, "answers": {"en": "Tracking"}}, "need an answer in that language"),
        ("order-status", {**ORDER_STATUS, "links": [{"url": "http://shop.example.com", "title": "x"}]}, "https"),
        ("order-status", {**ORDER_STATUS, "questions": []}, "questions"),
        ("order-status", {**ORDER_STATUS, "colour": "blue"}, "colour"),
        ("order-status", {**ORDER_STATUS, "id": "another"}, "path"),
        ("order status!", ORDER_STATUS, "entry ids"),
    ],
)
def test_an_entry_the_assistant_could_not_use_is_refused(
    client: Client, hub: Hub, entry_id: str, body: dict[str, Any], says: str
) -> None:
    response = client.http.put(f"/v1/knowledge/{entry_id}", headers=API, body=json.dumps(body))

    assert response.status_code == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == "invalid_request" and says in error["message"]
    assert hub.item_count() == 0  # nothing written, not even the version


def test_entries_are_listed_in_pages_with_a_cursor(client: Client) -> None:
    for index in range(5):
        assert put(client, f"faq-{index}", OPENING_HOURS)[0] == 201

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        status, page = get(client, "/v1/knowledge", limit="2", **({"cursor": cursor} if cursor else {}))
        assert status == 200
        seen += [entry["id"] for entry in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"faq-{index}" for index in range(5)] and pages == 3

    assert get(client, "/v1/knowledge", cursor="not-a-cursor!")[0] == 400
    assert get(client, "/v1/knowledge", limit="0")[0] == 400


def test_search_shows_the_matches_with_their_scores(client: Client) -> None:
    put(client, "order-status", ORDER_STATUS)
    put(client, "password-reset", PASSWORD_RESET)
    put(client, "opening-hours", OPENING_HOURS)

    # A Turkish customer typing without a Turkish keyboard
    status, found = get(client, "/v1/knowledge", query="siparisim nerde")
    assert status == 200
    best, *others = found["data"]
    assert best["id"] == "order-status" and best["confident"] is True and best["score"] >= 90
    assert best["language"] == "tr" and best["answer"] == ORDER_STATUS["answers"]["tr"]
    assert best["matched_question"] == {"language": "tr", "text": "Siparişim nerede?"}
    assert best["links"] == ORDER_STATUS["links"]
    assert len(others) == 2
    assert all(not match["confident"] and match["score"] <= best["score"] for match in others)

    # The customer's language, given, in a form such as en-GB
    status, found = get(client, "/v1/knowledge", query="Where's my package??", language="en-GB")
    assert found["data"][0]["id"] == "order-status" and found["data"][0]["language"] == "en"

    # Unrelated text matches nothing confidently
    status, found = get(client, "/v1/knowledge", query="my car broke down")
    assert status == 200 and not any(match["confident"] for match in found["data"])

    assert get(client, "/v1/knowledge", query="  ")[0] == 400
    assert get(client, "/v1/knowledge", query="x" * 1001)[0] == 400
    assert get(client, "/v1/knowledge", query="hello", language="english please")[0] == 400


# --- The store and the assistant's cache --------------------------------------------------------


def test_every_put_and_delete_bumps_the_version_in_the_same_transaction(hub: Hub) -> None:
    from chalicelib.domain.knowledge import KnowledgeEntry
    from chalicelib.store import knowledge as store

    assert store.version() == 0
    entry = KnowledgeEntry.model_validate({"id": "hours", **OPENING_HOURS})
    calls = count_requests()

    assert store.put_entry(entry) is True
    assert store.put_entry(entry) is False
    assert store.delete_entry("hours") is True
    assert store.delete_entry("hours") is False  # nothing deleted: no bump

    assert store.version() == 3
    assert calls["TransactWriteItems"] == 4 and calls["Scan"] == 0


def test_the_knowledge_base_is_bounded(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services import knowledge
    from chalicelib.services.errors import InvalidRequest
    from chalicelib.store import knowledge as store

    monkeypatch.setattr(store, "MAX_ENTRIES", 2)
    knowledge.put_entry("one", OPENING_HOURS)
    knowledge.put_entry("two", OPENING_HOURS)

    with pytest.raises(InvalidRequest, match="holds 2 entries"):
        knowledge.put_entry("three", OPENING_HOURS)
    _, created = knowledge.put_entry("two", PASSWORD_RESET)  # replacing is fine
    assert created is False
    knowledge.delete_entry("one")
    assert knowledge.put_entry("three", OPENING_HOURS)[1] is True


def test_the_assistant_answers_from_its_cache_and_sees_another_instances_change(hub: Hub) -> None:
    from chalicelib.domain.knowledge import KnowledgeEntry
    from chalicelib.services import knowledge
    from chalicelib.store import knowledge as store

    knowledge.forget_cache()
    knowledge.put_entry("order-status", ORDER_STATUS)
    knowledge.put_entry("password-reset", PASSWORD_RESET)

    # Given a warm cache
    first = knowledge.answer("SİPARİŞİM NEREDE?", "tr")
    assert first is not None and first.entry.id == "order-status" and first.answer == ORDER_STATUS["answers"]["tr"]

    # Then answering again costs one GetItem (the version), and reads no entry
    calls = count_requests()
    english = knowledge.answer("I forgot my password", None)
    assert english is not None and english.entry.id == "password-reset" and english.language == "en"
    assert calls == Counter({"GetItem": 1})

    # When another instance changes an answer and removes an entry (straight through the store)
    changed = KnowledgeEntry.model_validate(
        {"id": "order-status", **ORDER_STATUS, "answers": {"tr": "Yeni cevap", "en": "New answer"}}
    )
    store.put_entry(changed)
    store.delete_entry("password-reset")

    # Then the next answer reloads once and sees both changes
    calls.clear()
    fresh = knowledge.answer("siparişim nerede", "tr")
    assert fresh is not None and fresh.answer == "Yeni cevap"
    assert calls == Counter({"GetItem": 1, "Query": 1})
    assert knowledge.answer("I forgot my password", "en") is None
    assert calls == Counter({"GetItem": 2, "Query": 1})


def test_the_assistant_does_not_answer_what_it_does_not_know(hub: Hub) -> None:
    from chalicelib.services import knowledge

    knowledge.forget_cache()
    assert knowledge.answer("siparişim nerede", "tr") is None  # an empty knowledge base
    knowledge.put_entry("order-status", ORDER_STATUS)
    knowledge.put_entry("opening-hours", OPENING_HOURS)

    assert knowledge.answer("merhaba", "tr") is None
    assert knowledge.answer("hello", None) is None
    assert knowledge.answer("my car broke down", "en") is None
    assert knowledge.answer("", "en") is None
