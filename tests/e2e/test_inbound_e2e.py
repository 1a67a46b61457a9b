"""End to end through the running local stack, only over HTTP, with requests signed as the
providers sign them: messages land, one customer per person, one thread, routing hand-off."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import requests

from tests.e2e.conftest import TWILIO_TOKEN, RunningHub
from tests.support.twilio_signature import sign_form

MESSAGING = "/webhooks/twilio/messaging"


def new_number() -> str:
    """A fresh valid US number per test, so tests never see each other's customers."""
    return f"+1501{uuid.uuid4().int % 10_000_000:07d}"


def twilio_post(
    hub: RunningHub, params: dict[str, str], path: str = MESSAGING, token: str = TWILIO_TOKEN
) -> requests.Response:
    url = hub.url + path
    return requests.post(
        url,
        data=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_form(url, params, token),
        },
        timeout=15,
    )


def inbound(sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SM{uuid.uuid4().hex}",
        "AccountSid": "AC00000000000000000000000000000000",
        "From": sender,
        "To": "whatsapp:+14155238886" if sender.startswith("whatsapp:") else "+14155238886",
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def wait_for(predicate: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_health(running_hub: RunningHub) -> None:
    response = requests.get(running_hub.url + "/health", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_sms_and_whatsapp_from_one_number_form_one_thread_and_reach_routing(running_hub: RunningHub) -> None:
    number = new_number()

    first = twilio_post(running_hub, inbound(f"whatsapp:{number}", "Hello on WhatsApp", ProfileName="Grace H"))
    second = twilio_post(running_hub, inbound(number, "and now by SMS"))
    media = inbound(number, "", NumMedia="1", MediaUrl0="https://api.twilio.com/m/ME1", MediaContentType0="image/png")
    third = twilio_post(running_hub, media)

    for response in (first, second, third):
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/xml")
        assert response.text.endswith("<Response/>")
    customer = running_hub.customer_by_phone(number.replace("+1", "").replace("501", "(501) ", 1))
    assert customer is not None
    assert customer["name"] == "Grace H"
    messages = running_hub.messages(customer["conversation_id"])
    assert [(m["channel"], m["body"]) for m in messages] == [
        ("whatsapp", "Hello on WhatsApp"),
        ("sms", "and now by SMS"),
        ("sms", ""),
    ]
    assert messages[2]["media"][0]["content_type"] == "image/png"
    assert all(m["direction"] == "inbound" and m["customer_id"] == customer["id"] for m in messages)
    assert all(m["created_at"].endswith("Z") for m in messages)

    conversation = wait_for(
        lambda: (
            (c := running_hub.get(f"/v1/conversations/{customer['conversation_id']}").json())["status"] == "waiting"
            and c
        )
    )
    assert conversation["counts"] == {"messages": 3, "inbound": 3, "outbound": 0}
    assert conversation["channels"] == ["sms", "whatsapp"]
    via_customer = running_hub.get(f"/v1/customers/{customer['id']}/conversation").json()
    assert via_customer["id"] == customer["conversation_id"]


def test_provider_retries_never_duplicate(running_hub: RunningHub) -> None:
    number = new_number()
    params = inbound(number, "retry me", sid="SMretry" + uuid.uuid4().hex[:20])

    responses = [twilio_post(running_hub, params) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    assert len(running_hub.messages(customer["conversation_id"])) == 1


def test_forged_signatures_are_refused_and_store_nothing(running_hub: RunningHub) -> None:
    number = new_number()
    params = inbound(number, "let me in")

    forged = twilio_post(running_hub, params, token="not-the-token")
    unsigned = requests.post(running_hub.url + MESSAGING, data=params, timeout=10)
    replayed_elsewhere = requests.post(
        running_hub.url + MESSAGING + "?x=1",
        data=params,
        headers={"X-Twilio-Signature": sign_form(running_hub.url + MESSAGING, params, TWILIO_TOKEN)},
        timeout=10,
    )

    for response in (forged, unsigned, replayed_elsewhere):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert running_hub.customer_by_phone(number) is None
    assert TWILIO_TOKEN not in running_hub.log()


def test_first_messages_racing_over_http_make_one_customer(running_hub: RunningHub) -> None:
    number = new_number()
    racers = 10
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def send(index: int) -> None:
        params = inbound(f"whatsapp:{number}" if index % 2 else number, f"race {index}")
        barrier.wait()
        statuses.append(twilio_post(running_hub, params).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert statuses == [200] * racers
    customer = running_hub.customer_by_phone(number)
    assert customer is not None
    messages = running_hub.messages(customer["conversation_id"])
    assert sorted(m["body"] for m in messages) == sorted(f"race {i}" for i in range(racers))
    assert {m["customer_id"] for m in messages} == {customer["id"]}
    created = [m["created_at"] for m in messages]
    assert created == sorted(created), "the thread is ordered by arrival"


def test_status_callback_for_an_unknown_message_is_acknowledged(running_hub: RunningHub) -> None:
    params = {"MessageSid": "SMunknown" + uuid.uuid4().hex[:20], "MessageStatus": "delivered", "AccountSid": "AC0"}
    response = twilio_post(running_hub, params, path="/webhooks/twilio/status")
    assert response.status_code == 200
