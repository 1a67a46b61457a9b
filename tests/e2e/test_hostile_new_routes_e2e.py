"""The routes of the switchboard, the assistant's knowledge base, business hours, integrations and
the handoff packet, fed hostile bodies and ids over HTTP: always a JSON 4xx, never a 5xx."""

from __future__ import annotations

import random

import pytest
import requests

from tests.e2e.conftest import RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post

HOSTILE_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"12",
    b"{",
    b'{"action": NaN}',
    b'{"a": ' * 200 + b"1" + b"}" * 200,
    b'{"action": "pass", "to": ' + b'"x"' * 3 + b"}",
    b'{"action": "pass", "to": "humans", "metadata": {"x": "' + b"y" * 20000 + b'"}}',
    b'{"action": "offer", "to": "humans"}',
    b'{"action": "take", "by": 5}',
    b'{"questions": [{"language": "tr", "text": ""}], "answers": {}}',
    b'{"questions": "what", "answers": {"en": 1}}',
    b'{"timezone": "Mars/Olympus", "weekly": {"mon": [{"start": "25:00", "end": "09:00"}]}}',
    b'{"timezone": "UTC", "weekly": {"mon": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}}',
    b'{"timezone": "UTC", "exceptions": {"2026-02-30": []}}',
    b'{"name": "", "url": "ftp://x"}',
    b'{"name": "bot", "url": "https://bots.example.com/h", "secret": "whsec_short"}',
    b'{"sender": {"type": "bot", "id": "int_x"}, "agent_id": "a", "body": "hi"}',
    b'{"sender": {"type": "robot", "id": "x"}, "body": "hi"}',
]


def _conversation(running_hub: RunningHub) -> str:
    number = new_number()
    assert twilio_post(running_hub, inbound(number, "hello")).status_code == 200
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    return str(customer["conversation_id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/conversations/{conversation}/control"),
        ("POST", "/v1/conversations/{conversation}/messages"),
        ("PUT", "/v1/knowledge/faq-1"),
        ("PUT", "/v1/business-hours/week"),
        ("POST", "/v1/integrations"),
    ],
)
def test_hostile_bodies_get_a_json_4xx(running_hub: RunningHub, method: str, path: str) -> None:
    url = running_hub.url + path.format(conversation=_conversation(running_hub))
    for body in HOSTILE_BODIES:
        response = requests.request(
            method, url, data=body, headers={**running_hub.api, "Content-Type": "application/json"}, timeout=15
        )
        assert 400 <= response.status_code < 500, (path, body[:60], response.status_code, response.text[:200])
        assert response.status_code != 401, "authenticated: the route itself refused it"
        assert set(response.json()) == {"error"}, response.text[:200]


def test_hostile_ids_and_queries_get_a_json_4xx(running_hub: RunningHub) -> None:
    rng = random.Random(11)
    junk = ["x" * 3000, "../../etc", "%00", "conv_" + "Z" * 26, "' OR 1=1", "İ" * 50]
    junk += ["".join(rng.choice("abcXYZ_-%.") for _ in range(rng.randint(1, 80))) for _ in range(10)]
    for value in junk:
        for method, path in (
            ("GET", f"/v1/conversations/{value}/handoff"),
            ("POST", f"/v1/conversations/{value}/control"),
            ("GET", f"/v1/knowledge/{value}"),
            ("DELETE", f"/v1/knowledge/{value}"),
            ("GET", f"/v1/business-hours/{value}"),
            ("GET", f"/v1/business-hours/{value}/status"),
            ("GET", f"/v1/integrations/{value}"),
            ("DELETE", f"/v1/integrations/{value}"),
        ):
            response = requests.request(
                method, running_hub.url + path, json={"action": "take"}, headers=running_hub.api, timeout=15
            )
            assert 400 <= response.status_code < 500, (path[:60], response.status_code, response.text[:200])
            assert response.status_code != 401
    for query in (
        "query=" + "x" * 5000,
        "query=&language=%ZZ",
        "query=hi&language=" + "q" * 300,
        "limit=0",
        "cursor=@@@",
    ):
        response = requests.get(running_hub.url + "/v1/knowledge?" + query, headers=running_hub.api, timeout=15)
        assert response.status_code < 500, (query[:40], response.status_code, response.text[:200])
    status = requests.get(
        running_hub.url + "/v1/business-hours/week/status?at=yesterday", headers=running_hub.api, timeout=15
    )
    assert status.status_code in (400, 404)
