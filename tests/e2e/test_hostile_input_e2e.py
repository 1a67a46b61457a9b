"""Whatever a provider or client sends, the hub answers with a clear 4xx JSON error, never a 500,
and writes nothing it should not."""

from __future__ import annotations

import random
import string
import time
import uuid
from urllib.parse import urlencode

import pytest
import requests

from tests.e2e.conftest import RunningHub, free_port, start_hub, stop_hub, wait_healthy
from tests.e2e.test_inbound_e2e import MESSAGING, inbound, new_number, twilio_post


def error_of(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return dict(body["error"])


@pytest.mark.parametrize(
    ("drop", "field"),
    [("From", "'From'"), ("To", "'To'"), ("MessageSid", "'MessageSid'")],
)
def test_signed_but_incomplete_messages_get_400_naming_the_field(
    running_hub: RunningHub, drop: str, field: str
) -> None:
    number = new_number()
    params = {k: v for k, v in inbound(number, "hi").items() if k != drop}

    response = twilio_post(running_hub, params)

    assert response.status_code == 400
    assert field in error_of(response)["message"]
    assert running_hub.customer_by_phone(number) is None


def test_random_signed_forms_never_produce_a_500(running_hub: RunningHub) -> None:
    rng = random.Random(7)
    alphabet = string.printable + "éşğü🙏\x00"
    keys = ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "ProfileName", "WaId", "Latitude", "x"]
    statuses = []
    for _ in range(40):
        params = {
            rng.choice(keys): "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            for _ in range(rng.randint(0, 6))
        }
        if rng.random() < 0.5:
            params["From"] = rng.choice(["+15017122661", "whatsapp:+44", "tel:", "mailto:x", "+999"])
        statuses.append(twilio_post(running_hub, params).status_code)
    assert all(status < 500 for status in statuses), statuses


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("POST", "/v1/nothing/here", 404, "not_found"),
        ("DELETE", "/health", 405, "method_not_allowed"),
        ("GET", MESSAGING, 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_and_wrong_methods(
    running_hub: RunningHub, method: str, path: str, status: int, code: str
) -> None:
    response = requests.request(method, running_hub.url + path, headers=running_hub.api, timeout=10)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_wrong_content_type_is_415(running_hub: RunningHub) -> None:
    response = requests.post(
        running_hub.url + MESSAGING, data="<xml/>", headers={"Content-Type": "text/xml"}, timeout=10
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_bodies_over_the_limit_are_413_before_anything_else(running_hub: RunningHub) -> None:
    params = inbound(new_number(), "x" * (300 * 1024))
    response = requests.post(
        running_hub.url + MESSAGING,
        data=urlencode(params),
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_lying_content_length_is_refused(running_hub: RunningHub) -> None:
    import socket

    host, port = running_hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /webhooks/twilio/messaging HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 400")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZTJlLWFwaS1rZXk6"}, {"Authorization": "Bearer"}],
)
def test_the_api_requires_the_key(running_hub: RunningHub, headers: dict[str, str]) -> None:
    response = requests.get(running_hub.url + "/v1/customers?phone=+15017122661", headers=headers, timeout=10)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/customers", "exactly one"),
        ("/v1/customers?phone=1&email=a@b.co", "exactly one"),
        ("/v1/customers?phone=banana", "phone"),
        ("/v1/customers?email=nope", "email"),
        ("/v1/customers?phone=1&phone=2", "more than once"),
    ],
)
def test_bad_lookups_are_400(running_hub: RunningHub, path: str, fragment: str) -> None:
    response = running_hub.get(path)
    assert response.status_code == 400
    assert fragment in error_of(response)["message"]


def test_unknown_customers_and_conversations_are_404(running_hub: RunningHub) -> None:
    for path in (
        "/v1/customers/cus_nope",
        "/v1/conversations/conv_nope",
        "/v1/conversations/conv_nope/messages",
        "/v1/customers/cus_nope/conversation",
    ):
        response = running_hub.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


def test_bad_pagination_is_400(running_hub: RunningHub) -> None:
    number = new_number()
    twilio_post(running_hub, inbound(number, "hi"))
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    base = f"/v1/conversations/{customer['conversation_id']}/messages"
    for query in ("?limit=0", "?limit=abc", "?limit=1000", "?cursor=%%%", "?cursor=bm90LWEtdWxpZA"):
        response = running_hub.get(base + query)
        assert response.status_code == 400, query


def test_patch_validates_and_links_identities_or_conflicts(running_hub: RunningHub) -> None:
    first, second = new_number(), new_number()
    twilio_post(running_hub, inbound(first, "one"))
    twilio_post(running_hub, inbound(second, "two"))
    a, b = running_hub.customer_by_phone(first), running_hub.customer_by_phone(second)
    assert a and b
    url = f"{running_hub.url}/v1/customers/{a['id']}"

    def patch(body: object, raw: str | None = None) -> requests.Response:
        headers = {**running_hub.api, "Content-Type": "application/json"}
        if raw is not None:
            return requests.patch(url, data=raw, headers=headers, timeout=10)
        return requests.patch(url, json=body, headers=headers, timeout=10)

    assert patch(None, raw="{nope").status_code == 400
    assert patch(None, raw="[1,2]").status_code == 400
    assert patch(None, raw="").status_code == 400
    unknown = patch({"favourite_colour": "red"})
    assert unknown.status_code == 400 and "favourite_colour" in error_of(unknown)["message"]
    assert patch({"phone": "banana"}).status_code == 400

    taken = patch({"phone": second})
    assert taken.status_code == 409
    assert b["id"] in error_of(taken)["message"]

    email = f"{uuid.uuid4().hex[:8]}@Example.com"
    linked = patch({"email": f"Someone <{email}>", "name": "Named by CRM", "attributes": {"tier": "gold"}})
    assert linked.status_code == 200, linked.text
    assert linked.json()["email"] == email.lower()
    assert running_hub.customer_by_email(email.upper())["id"] == a["id"]


def test_ctrl_c_stops_the_stack_cleanly(tmp_path: object) -> None:
    from pathlib import Path

    port = free_port()
    log_path = Path(str(tmp_path)) / "hub.log"
    process = start_hub(port, log_path)
    wait_healthy(f"http://127.0.0.1:{port}", process, log_path)
    # /health answers as soon as the server is up; the banner follows a moment later.
    deadline = time.monotonic() + 10
    while "Bearer e2e-api-key" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    banner = log_path.read_text()
    assert f"http://127.0.0.1:{port}/webhooks/twilio/messaging" in banner
    assert "Bearer e2e-api-key" in banner

    code, output = stop_hub(process, log_path)

    assert code == 0, output[-2000:]
    assert "omnihub: stopped" in output
    assert "Traceback" not in output


def test_values_dynamodb_cannot_store_are_400_not_500(running_hub: RunningHub) -> None:
    number = new_number()
    twilio_post(running_hub, inbound(number, "hi"))
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    url = f"{running_hub.url}/v1/customers/{customer['id']}"
    headers = {**running_hub.api, "Content-Type": "application/json"}
    for raw in (
        '{"attributes": {"x": NaN}}',
        '{"attributes": {"x": Infinity}}',
        '{"attributes": {"x": 1e400}}',
        '{"attributes": {"x": ' + "9" * 60 + "}}",
        '{"attributes": {"x": ' + "[" * 40 + "]" * 40 + "}}",
        '{"attributes": {"x": "' + "y" * 200_000 + '"}}',
        '{"name": "' + "n" * 5000 + '"}',
    ):
        response = requests.patch(url, data=raw, headers=headers, timeout=15)
        assert response.status_code == 400, (raw[:60], response.text[:200])
        error_of(response)


def test_oversized_ids_and_provider_ids_never_reach_the_database(running_hub: RunningHub) -> None:
    long = "x" * 3000
    assert twilio_post(running_hub, {**inbound(new_number(), "hi"), "MessageSid": "SM" + long}).status_code == 400
    status = twilio_post(running_hub, {"MessageSid": "SM" + long, "MessageStatus": "sent"}, "/webhooks/twilio/status")
    assert status.status_code == 400
    for method, path in (
        ("GET", f"/v1/customers/cus_{long}"),
        ("GET", f"/v1/conversations/conv_{long}/messages"),
        ("POST", f"/v1/offers/ofr_{long}/accept"),
        ("POST", f"/v1/agents/{long}/status"),
        ("DELETE", f"/v1/webhooks/wh_{long}"),
    ):
        response = requests.request(
            method, running_hub.url + path, json={"status": "available"}, headers=running_hub.api, timeout=10
        )
        assert response.status_code in (400, 404), (path[:40], response.status_code)
    reply = requests.post(
        running_hub.url + "/v1/conversations/conv_x/messages",
        json={"body": "x", "agent_id": long},
        headers={**running_hub.api, "Idempotency-Key": "k" * 5000},
        timeout=10,
    )
    assert reply.status_code == 400
