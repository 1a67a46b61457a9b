"""CRM events and webhook signing, without AWS: ids, payload bytes, Standard Webhooks headers,
endpoint input checks and the retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from chalicelib.domain.events import EVENT_TYPES, CrmEvent, WebhookEndpoint, event_id, new_event, payload

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def endpoint(events: list[str], secret: str = SECRET) -> WebhookEndpoint:
    return WebhookEndpoint(
        id="wh_1", url="https://crm.example.com/hooks", events=events, secret=secret, created_at=datetime.now(UTC)
    )


def spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1, written from the spec: HMAC-SHA256 over `{id}.{timestamp}.{body}`,
    keyed with the base64-decoded part of the secret after `whsec_`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- Event ids --------------------------------------------------------------------------------


def test_event_id_is_deterministic_for_type_and_key() -> None:
    # Given the same state change described twice (a retried worker step)
    first = event_id("message.created", "msg_01J00000000000000000000000")
    again = event_id("message.created", "msg_01J00000000000000000000000")

    # Then the ids are equal, shaped evt_ + 26 base32 characters (no '.', the signature delimiter)
    assert first == again
    assert re.fullmatch(r"evt_[A-Z2-7]{26}", first)
    digest = hashlib.sha256(b"message.created\nmsg_01J00000000000000000000000").digest()
    assert first == "evt_" + base64.b32encode(digest).decode()[:26]


def test_event_id_differs_by_type_and_by_key() -> None:
    ids = {
        event_id("message.created", "msg_1"),
        event_id("message.status_updated", "msg_1"),
        event_id("message.created", "msg_2"),
        # the separator keeps ("a.b", "c") and ("a", "b.c")-style concatenations apart
        event_id("offer.created", "x"),
        event_id("offer.create", "dx"),
    }
    assert len(ids) == 5


def test_new_event_rejects_unknown_types_and_empty_keys() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown CRM event type 'message.deleted'")):
        new_event("message.deleted", {}, "k")
    with pytest.raises(ValueError, match="key"):
        new_event("message.created", {}, "")


def test_every_event_type_the_hub_emits_is_known() -> None:
    assert set(EVENT_TYPES) == {
        "customer.created",
        "customer.updated",
        "message.created",
        "message.status_updated",
        "conversation.queued",
        "offer.created",
        "offer.accepted",
        "offer.expired",
        "offer.rejected",
        "offer.rescinded",
        "conversation.assigned",
        "conversation.transferred",
        "conversation.resolved",
        "conversation.channel_linked",
        "conversation.control_changed",
        "sla.warning",
        "sla.breached",
        "conversation.escalated",
        "csat.requested",
        "csat.submitted",
    }
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES))
    for event_type in EVENT_TYPES:
        assert new_event(event_type, {}, "k").type == event_type


# --- Payload ------------------------------------------------------------------------------------


def test_payload_is_compact_json_in_standard_webhooks_shape() -> None:
    # Given an event at a time given in another zone
    at = datetime(2025, 3, 1, 14, 30, 5, 123000, tzinfo=timezone(timedelta(hours=2)))
    event = new_event("message.created", {"z": 1, "a": {"y": [1, {"c": 2, "b": 3}], "x": None}}, "msg_1", at)

    # When it is serialised
    body = payload(event)

    # Then it is {type, timestamp, data} in that order, minified, nested keys sorted, time in UTC
    assert body == (
        b'{"type":"message.created","timestamp":"2025-03-01T12:30:05.123000Z",'
        b'"data":{"a":{"x":null,"y":[1,{"b":3,"c":2}]},"z":1}}'
    )
    assert event.timestamp.tzinfo == UTC


def test_payload_is_the_same_after_a_trip_through_the_queue() -> None:
    # Given an event with non-ASCII text and a datetime in its data
    event = new_event(
        "customer.updated", {"name": "Zoë 🚀", "seen": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)}, "cus_1@v2"
    )

    # When it is queued as JSON and read back by the worker
    wire = json.dumps(event.model_dump(mode="json"))
    back = CrmEvent.model_validate(json.loads(wire))

    # Then the bytes sent are identical (ASCII only, so no encoding ambiguity for receivers)
    assert payload(back) == payload(event)
    assert payload(event).isascii()
    assert json.loads(payload(event))["data"] == {"name": "Zoë 🚀", "seen": "2025-01-02T03:04:05Z"}


def test_event_ids_must_not_carry_the_signature_delimiter() -> None:
    with pytest.raises(ValidationError):
        CrmEvent(id="evt_A.B", type="message.created", timestamp=datetime.now(UTC), data={})


# --- Signing ------------------------------------------------------------------------------------


def test_signed_headers_verify_with_the_library_and_with_the_spec() -> None:
    from standardwebhooks import Webhook

    from chalicelib.services.crm_delivery import signed_headers

    # Given an event for an endpoint with a known secret
    event = new_event("offer.created", {"offer_id": "off_1"}, "off_1")
    body = payload(event)
    now = int(time.time())

    # When the headers of one attempt are made
    headers = signed_headers(endpoint(["*"]), event, body, now=now)

    # Then they carry the event id, the attempt time and a v1 signature both implementations accept
    assert headers["webhook-id"] == event.id
    assert headers["webhook-timestamp"] == str(now)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "omnihub-webhooks/1"
    assert headers["webhook-signature"] == spec_signature(SECRET, event.id, str(now), body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)


def test_a_signature_does_not_verify_with_another_secret_or_body() -> None:
    from standardwebhooks import Webhook, WebhookVerificationError

    from chalicelib.services.crm_delivery import signed_headers

    event = new_event("offer.created", {"offer_id": "off_1"}, "off_1")
    headers = signed_headers(endpoint(["*"]), event, payload(event))
    other = "whsec_" + base64.b64encode(b"\x01" * 32).decode()

    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(payload(event), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload(event).replace(b"off_1", b"off_2"), headers)


# --- Endpoints -----------------------------------------------------------------------------------


def test_endpoint_subscriptions() -> None:
    assert endpoint(["*"]).subscribes("conversation.resolved")
    assert endpoint(["message.created"]).subscribes("message.created")
    assert not endpoint(["message.created"]).subscribes("message.status_updated")


def test_endpoint_secret_never_shows_in_its_repr() -> None:
    assert SECRET not in repr(endpoint(["*"]))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://crm.example.com/x", "http or https"),
        ("https:///path", "host"),
        ("http://crm.example.com/hooks", "https"),
        ("https://user:pw@crm.example.com/hooks", "credentials"),
        ("https://crm.example.com/hooks#frag", "fragment"),
        ("https://crm.example.com:99999/", "not a valid URL"),
        ("https://crm.example.com/a b", "whitespace"),
        ("", "required"),
        ("https://crm.example.com/" + "a" * 2048, "at most 2048"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    from chalicelib.services.errors import InvalidRequest
    from chalicelib.services.webhooks import validate_url

    with pytest.raises(InvalidRequest, match=message):
        validate_url(url)


def test_http_is_accepted_for_loopback_or_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.errors import InvalidRequest
    from chalicelib.services.webhooks import validate_url

    monkeypatch.delenv("ALLOW_INSECURE_WEBHOOK_URLS", raising=False)
    assert validate_url("http://127.0.0.1:8080/hooks") == "http://127.0.0.1:8080/hooks"
    assert validate_url("http://localhost/hooks") == "http://localhost/hooks"
    assert validate_url("http://[::1]:9000/") == "http://[::1]:9000/"
    assert validate_url(" https://crm.example.com/hooks?x=1 ") == "https://crm.example.com/hooks?x=1"
    with pytest.raises(InvalidRequest):
        validate_url("http://10.0.0.5/hooks")

    monkeypatch.setenv("ALLOW_INSECURE_WEBHOOK_URLS", "true")
    assert validate_url("http://10.0.0.5/hooks") == "http://10.0.0.5/hooks"


def test_event_lists_are_checked() -> None:
    from chalicelib.services.errors import InvalidRequest
    from chalicelib.services.webhooks import validate_events

    assert validate_events(["*"]) == ["*"]
    assert validate_events(["message.created", "offer.created", "message.created"]) == [
        "message.created",
        "offer.created",
    ]
    with pytest.raises(InvalidRequest, match="non-empty"):
        validate_events([])
    with pytest.raises(InvalidRequest, match="unknown event type"):
        validate_events(["message.created", "message.deleted"])
    with pytest.raises(InvalidRequest, match="alone"):
        validate_events(["*", "message.created"])


def test_secrets_are_checked_and_generated_in_whsec_format() -> None:
    from chalicelib.services.errors import InvalidRequest
    from chalicelib.services.webhooks import generate_secret, validate_secret

    generated = generate_secret()
    assert generated.startswith("whsec_")
    assert len(validate_secret(generated)) == 32
    assert generate_secret() != generated
    assert validate_secret(SECRET) == bytes(range(32))
    assert len(validate_secret("whsec_" + base64.b64encode(b"k" * 64).decode())) == 64

    for bad, message in [
        ("sk_" + base64.b64encode(b"k" * 32).decode(), "whsec_"),
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), "24 to 64"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24 to 64"),
        ("whsec_not*base64!", "base64"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            validate_secret(bad)


# --- Retry schedule ------------------------------------------------------------------------------


def test_retry_delays_grow_exponentially_with_jitter_and_stay_within_sqs_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib.services.crm_delivery import retry_delay

    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "5")
    for _ in range(50):
        assert 2 <= retry_delay(1) <= 5
        assert 5 <= retry_delay(2) <= 10
        assert 160 <= retry_delay(7) <= 320
        assert 450 <= retry_delay(12) <= 900
        assert retry_delay(40) <= 900
    # An endpoint's Retry-After is honoured, up to SQS's 900 s
    assert retry_delay(1, retry_after=60) == 60
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0")
    assert retry_delay(5) == 0


def test_settings_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.services.crm_delivery import max_attempts, timeout_seconds

    monkeypatch.delenv("WEBHOOK_MAX_ATTEMPTS", raising=False)
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "not a number")
    assert (max_attempts(), timeout_seconds()) == (8, 5.0)
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0.5")
    assert (max_attempts(), timeout_seconds()) == (3, 0.5)


# --- API shapes ----------------------------------------------------------------------------------


def test_create_request_forbids_unknown_fields_and_view_shows_secret_only_when_given() -> None:
    from chalicelib.api.webhook_models import WebhookEndpointCreate, endpoint_view

    with pytest.raises(ValidationError):
        WebhookEndpointCreate.model_validate({"url": "https://x.example", "events": ["*"], "active": True})
    with pytest.raises(ValidationError):
        WebhookEndpointCreate.model_validate({"url": "https://x.example", "events": []})
    request = WebhookEndpointCreate.model_validate({"url": "https://x.example", "events": ["*"]})
    assert (request.secret, request.description) == (None, None)

    shown = endpoint_view(endpoint(["*"]))
    assert "secret" not in shown and SECRET not in json.dumps(shown)
    assert shown["delivery"] == {
        "last_success_at": None,
        "last_failure_at": None,
        "last_error": None,
        "consecutive_failures": 0,
    }
    assert shown["created_at"].endswith("Z")
    assert endpoint_view(endpoint(["*"]), secret=SECRET)["secret"] == SECRET
