"""The analytics dashboard in a real browser: headless Chromium (Playwright) on the running local
stack. Sign in through the form; the charts show what the API answers for the same query; a new
customer message moves the live numbers within 5 seconds; a bar lists the cycles behind it; and
the page runs without a console error or a CSP violation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import API_KEY, RunningHub
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post, wait_for

SCREENSHOT = Path("/tmp/omnihub-dashboard.png")
TIMEZONE = "Europe/Istanbul"  # the browser's zone, which the page picks by default


@pytest.fixture
def dashboard(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 2000}, locale="en-US", timezone_id=TIMEZONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda message: (
            page.problems.append(f"console {message.type}: {message.text}")  # type: ignore[attr-defined]
            if message.type == "error"
            else None
        ),
    )
    yield page
    context.close()


def summary(hub: RunningHub, query: str, group_by: str) -> dict[str, Any]:
    params = dict(parse_qsl(query))
    answer = hub.get("/v1/analytics/summary", params={**params, "group_by": group_by})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def figure(page: Any, figure_id: str) -> dict[str, Any]:
    return dict(json.loads(page.locator(f"#{figure_id}").get_attribute("data-chart")))


def seed_traffic(hub: RunningHub) -> str:
    """Two customers on SMS and WhatsApp; an agent takes and answers what is offered to it."""
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    created = requests.put(
        f"{hub.url}/v1/agents/{agent_id}",
        json={"name": "Grace", "capacity": {"sms": 10, "whatsapp": 10}},
        headers=hub.api,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert requests.post(
        f"{hub.url}/v1/agents/{agent_id}/status", json={"status": "available"}, headers=hub.api, timeout=10
    ).ok
    for sender in (new_number(), f"whatsapp:{new_number()}"):
        assert twilio_post(hub, inbound(sender, "urgent: where is my order?")).status_code == 200

    def offers() -> list[str]:
        return list(hub.get(f"/v1/agents/{agent_id}").json().get("offer_ids") or [])

    for offer_id in wait_for(offers):
        requests.post(f"{hub.url}/v1/offers/{offer_id}/accept", headers=hub.api, timeout=10)
    held = wait_for(lambda: hub.get(f"/v1/agents/{agent_id}").json().get("conversation_ids"))
    for conversation_id in held:
        requests.post(
            f"{hub.url}/v1/conversations/{conversation_id}/messages",
            json={"agent_id": agent_id, "body": "On it!"},
            headers={**hub.api, "Idempotency-Key": f"dash-{uuid.uuid4().hex}"},
            timeout=15,
        )
    return agent_id


def test_the_dashboard_shows_what_the_api_answers_and_moves_live(webchat_hub: RunningHub, dashboard: Any) -> None:
    started = time.monotonic()
    hub, page = webchat_hub, dashboard
    seed_traffic(hub)

    # Signed out: the form. A wrong key is refused on the form; the right one opens the dashboard.
    page.goto(hub.url + "/dashboard")
    expect(page.get_by_role("heading", name="omnihub dashboard")).to_be_visible()
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    assert "not-the-key" not in page.url and API_KEY not in page.url
    refused = [problem for problem in page.problems if "status of 401" not in problem]
    assert refused == [], refused  # the browser logs the 401 answer itself; nothing else went wrong
    page.problems.clear()
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(hub.url + "/dashboard")
    assert API_KEY not in page.url
    expect(page.locator("body[data-state=loaded]")).to_have_count(1)
    assert page.locator("#tz").input_value() == TIMEZONE
    query = str(page.locator("body").get_attribute("data-query"))
    assert dict(parse_qsl(query))["tz"] == TIMEZONE

    # Conversations per day by channel, stacked: the same numbers as the API for the same query.
    drawn = figure(page, "fig-conversations")
    assert drawn["group_by"] == "channel,day"
    answer = summary(hub, query, "day,channel")
    expected: dict[tuple[str, str], int] = {(g["channel"], g["day"]): g["metrics"]["cycles"] for g in answer["groups"]}
    shown = {
        (channel, day): value
        for channel, values in drawn["series"].items()
        for day, value in zip(drawn["labels"], values, strict=True)
        if value
    }
    assert shown == {key: value for key, value in expected.items() if value}
    assert {"sms", "whatsapp"} <= set(drawn["series"])

    # First response p50/p90 per day and the SLA target line.
    first = figure(page, "fig-first-response")
    by_day = {g["day"]: g["metrics"]["first_response"] for g in summary(hub, query, "day")["groups"]}
    for day, p50, p90 in zip(first["labels"], first["series"]["p50"], first["series"]["p90"], strict=True):
        assert (p50, p90) == ((by_day[day]["p50"], by_day[day]["p90"]) if day in by_day else (None, None))
    assert first["target_seconds"] == 60
    assert first["total"]["count"] >= 1

    # The realtime panel shows the live totals (polled every 3 s: compare once both agree).
    def live_matches() -> bool:
        api_totals = hub.get("/v1/analytics/realtime").json()["totals"]
        return bool(figure(page, "fig-realtime")["totals"] == api_totals)

    wait_for(live_matches, timeout=8)

    # Clicking a bar lists the cycles behind it.
    bar = page.evaluate(
        """() => {
          const chart = Chart.getChart(document.getElementById('chart-conversations'));
          for (let d = 0; d < chart.data.datasets.length; d++) {
            const values = chart.data.datasets[d].data;
            for (let i = values.length - 1; i >= 0; i--) {
              if (values[i] > 0) {
                const el = chart.getDatasetMeta(d).data[i];
                return {x: el.x, y: (el.y + el.base) / 2, channel: chart.data.datasets[d].label, index: i,
                        value: values[i]};
              }
            }
          }
          return null;
        }"""
    )
    assert bar is not None
    box = page.locator("#chart-conversations").bounding_box()
    page.mouse.click(box["x"] + bar["x"], box["y"] + bar["y"])
    panel = page.locator("#cycles-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#cycles-panel[data-state=loaded]")).to_have_count(1)
    listed = page.locator("#cycles-table tbody tr[data-cycle-id]")
    expect(listed).to_have_count(min(bar["value"], 100))
    assert set(listed.locator("td:nth-child(2)").all_inner_texts()) == {bar["channel"]}
    drill = dict(parse_qsl(str(panel.get_attribute("data-query"))))
    assert drill["channel"] == bar["channel"] and drill["from"] == drawn["labels"][bar["index"]]

    # A new customer message moves the live "open" number within 5 seconds.
    before = int(page.locator("#rt-open").inner_text())
    assert twilio_post(hub, inbound(new_number(), "Hello, anyone there?")).status_code == 200
    sent = time.monotonic()
    page.wait_for_function(
        f"() => Number(document.getElementById('rt-open').textContent) > {before}", timeout=5_000, polling=100
    )
    assert time.monotonic() - sent < 5

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"\ndashboard screenshot: {SCREENSHOT}")
    assert page.problems == [], page.problems
    assert time.monotonic() - started < 60
