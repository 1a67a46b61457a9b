"""Web chat's HTTP edge on the running local stack: the page and script and their headers, CORS
for the JSON API (errors included), no API key needed and none granted, limits, hostile input."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningHub

ORIGIN = "https://shop.example"


def call(hub: RunningHub, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Origin": ORIGIN, **kwargs.pop("headers", {})}
    return requests.request(method, hub.url + path, headers=headers, timeout=35, **kwargs)


def new_session(hub: RunningHub) -> str:
    started = call(hub, "POST", "/webchat/sessions", json={})
    assert started.status_code == 201, started.text
    return str(started.json()["session"])


def test_the_page_is_self_contained_and_locked_down(webchat_hub: RunningHub) -> None:
    page = requests.get(webchat_hub.url + "/webchat", timeout=10)

    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]{44}'", policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text), "no external resources (no CDN)"
    assert "<textarea" in page.text and 'role="log"' in page.text

    script = requests.get(webchat_hub.url + "/webchat/embed.js", timeout=10)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "omnihub:identify" in script.text


def test_the_json_api_needs_no_api_key_and_its_session_grants_no_api_access(webchat_hub: RunningHub) -> None:
    token = new_session(webchat_hub)

    sent = call(
        webchat_hub, "POST", "/webchat/messages", json={"body": "hi"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert sent.status_code == 201, sent.text
    conversation_id = sent.json()["conversation_id"]
    as_api = requests.get(
        f"{webchat_hub.url}/v1/conversations/{conversation_id}/messages",
        headers={"Authorization": f"Bearer {sent.json()['session']}"},
        timeout=10,
    )
    assert as_api.status_code == 401


def test_cors_preflight_and_every_answer_carry_the_allowed_origin(webchat_hub: RunningHub) -> None:
    preflight = call(
        webchat_hub,
        "OPTIONS",
        "/webchat/messages",
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert call(webchat_hub, "OPTIONS", "/webchat/sessions").status_code == 204

    refused = call(webchat_hub, "GET", "/webchat/messages", headers={"Authorization": "Bearer v1.forged.token"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


def test_a_long_poll_answers_within_its_wait(webchat_hub: RunningHub) -> None:
    token = new_session(webchat_hub)
    auth = {"Authorization": f"Bearer {token}"}
    sent = call(webchat_hub, "POST", "/webchat/messages", json={"body": "hello", "client_id": "c1"}, headers=auth)
    auth = {"Authorization": f"Bearer {sent.json()['session']}"}
    after = sent.json()["message"]["id"]

    answer = call(webchat_hub, "GET", f"/webchat/messages?after={after}&wait=1", headers=auth)

    assert answer.status_code == 200 and answer.json()["data"] == [] and answer.json()["next_after"] == after
    assert 0.9 < answer.elapsed.total_seconds() < 4


HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/webchat/sessions", {"data": b"{not json"}),
    ("POST", "/webchat/sessions", {"json": ["a", "list"]}),
    ("POST", "/webchat/sessions", {"json": {"token": 5}}),
    ("POST", "/webchat/sessions", {"json": {"token": "v1.a.b"}}),
    ("POST", "/webchat/sessions", {"json": {"identity": "x" * 5000}}),
    ("POST", "/webchat/sessions", {"json": {"identity": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}}),
    ("POST", "/webchat/sessions", {"json": {"link": "v1.forged.link"}}),
    ("POST", "/webchat/sessions", {"json": {"nested": [[[[[[[[[[[[]]]]]]]]]]]]}}),
    ("POST", "/webchat/sessions", {"data": b"\xff\xfe\x00", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/webchat/sessions", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
    ("POST", "/webchat/messages", {"json": {"body": "hi"}}),
    ("POST", "/webchat/messages", {"json": {"body": "hi"}, "auth": "Basic abc"}),
    ("POST", "/webchat/messages", {"json": {"body": "x" * 20_000}, "auth": "SESSION"}),
    ("POST", "/webchat/messages", {"json": {"body": None}, "auth": "SESSION"}),
    ("POST", "/webchat/messages", {"json": {"body": "hi", "client_id": "../../x"}, "auth": "SESSION"}),
    ("POST", "/webchat/messages", {"json": {"body": "\u0000\ud800"}, "auth": "SESSION"}),
    ("GET", "/webchat/messages?wait=abc", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?wait=nan", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?wait=-1", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?wait=1e309", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?wait=1&wait=2", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?after=msg_../../../x", {"auth": "SESSION"}),
    ("GET", "/webchat/messages?after=" + "A" * 3000, {"auth": "SESSION"}),
    ("DELETE", "/webchat/messages", {"auth": "SESSION"}),
    ("PUT", "/webchat/sessions", {"json": {}}),
]


@pytest.mark.parametrize(("method", "path", "options"), HOSTILE, ids=[f"{m} {p[:40]}" for m, p, _ in HOSTILE])
def test_hostile_input_gets_a_json_4xx_never_a_500(
    webchat_hub: RunningHub, method: str, path: str, options: dict[str, Any]
) -> None:
    options = dict(options)
    auth = options.pop("auth", None)
    headers = dict(options.pop("headers", {}))
    if auth == "SESSION":
        headers["Authorization"] = f"Bearer {new_session(webchat_hub)}"
    elif auth:
        headers["Authorization"] = auth

    answer = call(webchat_hub, method, path, headers=headers, **options)

    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert set(answer.json()["error"]) == {"code", "message"}
    if answer.status_code == 413:
        assert answer.headers.get("Access-Control-Allow-Origin") == "*"
