"""The analytics API over HTTP on the running local stack: a customer message shows up in the live
figures at once and in the summary, drill-down and CSV; hostile queries get a JSON 4xx, never
a 5xx; without the API key nothing is answered."""

from __future__ import annotations

import csv
import io
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post

ROUTES = ("/v1/analytics/realtime", "/v1/analytics/summary", "/v1/analytics/cycles", "/v1/analytics/cycles.csv")


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=2)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}


def live_open(running_hub: RunningHub) -> int:
    response = running_hub.get("/v1/analytics/realtime")
    assert response.status_code == 200, response.text
    return int(response.json()["totals"]["open"])


def test_a_new_message_moves_the_live_numbers_and_lands_in_every_view(running_hub: RunningHub) -> None:
    before = live_open(running_hub)
    number = new_number()
    assert twilio_post(running_hub, inbound(number, "my order is late")).status_code == 200
    deadline = time.monotonic() + 5
    while live_open(running_hub) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_open(running_hub) == before + 1, "fresh within 5 seconds"
    customer = running_hub.customer_by_phone(number)
    assert customer is not None

    summary = running_hub.get("/v1/analytics/summary", params={**window(), "group_by": "channel"}).json()
    by_channel = {group["channel"]: group["metrics"] for group in summary["groups"]}
    assert by_channel["sms"]["cycles"] >= 1 and summary["cost"]["queries"] >= 1

    cycles: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        page = running_hub.get("/v1/analytics/cycles", params={**window(), "channel": "sms", "cursor": cursor or ""})
        assert page.status_code == 200, page.text
        cycles += page.json()["cycles"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert customer["conversation_id"] in {cycle["conversation_id"] for cycle in cycles}

    export = running_hub.get("/v1/analytics/cycles.csv", params=window())
    assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert customer["conversation_id"] in {row["conversation_id"] for row in rows}


HOSTILE = [
    {"from": "yesterday"},
    {"to": "2026-13-45"},
    {"from": "2026-12-02", "to": "2026-12-01"},
    {"from": "2020-01-01", "to": "2026-01-01"},
    {"tz": "Mars/Olympus"},
    {"tz": "../../etc/passwd"},
    {"group_by": "planet"},
    {"group_by": "day,hour"},
    {"group_by": "channel,queue"},
    {"service_level": "soon"},
    {"service_level": "-5"},
    {"service_level": "1e400"},
    {"metric": "happiness"},
    {"metric": "first_response", "min": "a lot"},
    {"min": "5"},
    {"cursor": "not-a-cursor"},
    {"cursor": "9999.99.cyc_ZZZZ"},
    {"limit": "0"},
    {"limit": "100000"},
    {"limit": "ten"},
    {"from": "\x00" * 40},
    {"tz": "x" * 5000},
]


@pytest.mark.parametrize("route", ROUTES)
def test_hostile_queries_get_a_json_4xx_never_a_5xx(running_hub: RunningHub, route: str) -> None:
    cases = [*HOSTILE, {name: "".join(random.choices("%&=?#\\\"'<>", k=12)) for name in ("from", "tz", "group_by")}]
    for params in cases:
        response = running_hub.get(route, params=params)
        assert response.status_code < 500, (params, response.status_code, response.text)
        if response.status_code >= 400:
            assert response.json()["error"]["code"], (params, response.text)
    repeated = requests.get(f"{running_hub.url}{route}?tz=UTC&tz=Europe/Paris", headers=running_hub.api, timeout=10)
    assert repeated.status_code < 500


@pytest.mark.parametrize("route", ROUTES)
def test_without_the_api_key_nothing_is_answered(running_hub: RunningHub, route: str) -> None:
    response = requests.get(f"{running_hub.url}{route}", timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    forged = requests.get(f"{running_hub.url}{route}", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert forged.status_code == 401
