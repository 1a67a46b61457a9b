"""The dashboard's HTTP edge on the running local stack: the sign-in form, the session cookie,
and what that cookie may read (GET /v1/analytics/... only); assets from a fixed list; no input
answered with a 5xx."""

from __future__ import annotations

import re

import pytest
import requests

from chalicelib.dashboard import session
from tests.e2e.conftest import API_KEY, RunningHub

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sign_in(hub: RunningHub, key: str = API_KEY) -> requests.Response:
    return requests.post(
        hub.url + "/dashboard/login", data={"api_key": key}, headers=FORM, allow_redirects=False, timeout=10
    )


def with_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{session.COOKIE_NAME}={token}"}


def test_signed_out_the_page_is_the_form_locked_down(running_hub: RunningHub) -> None:
    page = requests.get(running_hub.url + "/dashboard", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == POLICY
    assert '<form method="post" action="/dashboard/login"' in page.text and 'name="api_key"' in page.text
    assert "<script" not in page.text and "<style" not in page.text and " style=" not in page.text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text), "no external resources (no CDN)"
    assert "chart-conversations" not in page.text
    # The key in a URL signs nobody in.
    assert "chart-conversations" not in requests.get(running_hub.url + f"/dashboard?api_key={API_KEY}", timeout=10).text


def test_a_wrong_key_shows_the_form_again_with_401(running_hub: RunningHub) -> None:
    refused = sign_in(running_hub, "not-the-key")
    assert refused.status_code == 401 and "Set-Cookie" not in refused.headers
    assert "not right" in refused.text and 'name="api_key"' in refused.text
    assert refused.headers["Content-Security-Policy"] == POLICY


def test_the_right_key_sets_a_strict_session_cookie_and_opens_the_dashboard(running_hub: RunningHub) -> None:
    signed = sign_in(running_hub)
    assert signed.status_code == 303 and signed.headers["Location"] == "/dashboard"
    cookie = signed.headers["Set-Cookie"]
    flags = cookie.split("; ")
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} <= set(flags)  # DASHBOARD_SESSION_HOURS=12
    assert "Secure" not in flags  # PUBLIC_BASE_URL is http:// locally
    token = flags[0].split("=", 1)[1]
    assert API_KEY not in cookie and session.verify(API_KEY, token)

    page = requests.get(running_hub.url + "/dashboard", headers=with_cookie(token), timeout=10)
    assert page.status_code == 200 and "chart-conversations" in page.text
    assert page.headers["Content-Security-Policy"] == POLICY
    scripts = re.findall(r'<script defer src="([^"]+)"', page.text)
    assert [src.split("?")[0] for src in scripts] == [
        "/dashboard/assets/chart.umd.min.js",
        "/dashboard/assets/dashboard.js",
    ]
    for src in scripts:
        asset = requests.get(running_hub.url + src, timeout=10)
        assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/javascript")
        assert "max-age=31536000" in asset.headers["Cache-Control"]
    assert "Chart.js v4.6.1" in requests.get(running_hub.url + scripts[0], timeout=10).text[:200]

    for path in ("/v1/analytics/realtime", "/v1/analytics/summary?group_by=day,channel", "/v1/analytics/cycles"):
        read = requests.get(running_hub.url + path, headers=with_cookie(token), timeout=10)
        assert read.status_code == 200, (path, read.text)

    out = requests.post(
        running_hub.url + "/dashboard/logout", headers={**FORM, **with_cookie(token)}, allow_redirects=False, timeout=10
    )
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"].split("; ")


@pytest.mark.parametrize(
    "token",
    [
        session.sign("some-other-key", 3600),  # forged: not signed with the hub's key
        session.sign(API_KEY, -5),  # expired
        "tampered",
        "v1.9999999999.abcdefghijklmnopqrstuv." + "A" * 43,
        "",
    ],
    ids=["forged", "expired", "garbage", "tampered", "empty"],
)
def test_a_bad_cookie_gets_the_api_401(running_hub: RunningHub, token: str) -> None:
    valid = session.sign(API_KEY, 3600)
    if token == "v1.9999999999.abcdefghijklmnopqrstuv." + "A" * 43:
        _, expiry, nonce, signature = valid.split(".")
        token = f"v1.{int(expiry) + 86400}.{nonce}.{signature}"  # a later expiry under the old signature
    answer = requests.get(running_hub.url + "/v1/analytics/realtime", headers=with_cookie(token), timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    page = requests.get(running_hub.url + "/dashboard", headers=with_cookie(token), timeout=10)
    assert page.status_code == 200 and "chart-conversations" not in page.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/analytics/realtime"),
        ("DELETE", "/v1/analytics/summary"),
        ("GET", "/v1/agents"),
        ("GET", "/v1/customers?phone=%2B15017122661"),
        ("GET", "/v1/queues"),
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/agents/mallory/status"),
    ],
)
def test_a_valid_cookie_opens_nothing_but_analytics_reads(running_hub: RunningHub, method: str, path: str) -> None:
    answer = requests.request(
        method, running_hub.url + path, headers=with_cookie(session.sign(API_KEY, 3600)), json={}, timeout=10
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2F__init__.py", "session.py", "edge.py", "login.html", "%00", "dashboard.js%00.png"]
)
def test_only_the_listed_assets_are_served(running_hub: RunningHub, name: str) -> None:
    answer = requests.get(running_hub.url + f"/dashboard/assets/{name}", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", FORM),
        (b"api_key=", FORM),
        (b"\xff\xfe\x00garbage", FORM),
        (b"api_key=%ff%fe", FORM),
        (b"a=" + b"x" * 10_000, FORM),
        (b"&".join(b"f%d=1" % i for i in range(50)), FORM),
        (b'{"api_key": "e2e-api-key"}', {"Content-Type": "application/json"}),
        (b"api_key=e2e-api-key", {"Content-Type": "text/plain"}),
    ],
)
def test_hostile_sign_ins_get_a_4xx_never_a_5xx_and_no_cookie(
    running_hub: RunningHub, body: bytes, headers: dict[str, str]
) -> None:
    answer = requests.post(
        running_hub.url + "/dashboard/login", data=body, headers=headers, allow_redirects=False, timeout=10
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert "Set-Cookie" not in answer.headers
