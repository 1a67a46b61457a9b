"""The provider sandbox, driven over HTTP by the real twilio and sendgrid clients.

How the real clients are pointed at the sandbox (no monkeypatching of library internals):

* SendGrid: ``SendGridAPIClient(api_key, host=sandbox.url)``; ``host`` is a documented constructor
  argument (python_http_client builds ``{host}/v3/mail/send`` from it).
* Twilio: pass ``http_client=`` to ``twilio.rest.Client``, the extension point Twilio documents for
  custom HTTP clients. ``SandboxTwilioHttpClient`` below subclasses ``TwilioHttpClient`` and swaps
  scheme and host of every URL for the sandbox's, keeping path and query. It works for every Twilio
  domain and is immune to TWILIO_EDGE/TWILIO_REGION (the client rewrites hostnames for those *before*
  handing the URL to the http client). It also turns off ``trust_env`` so proxy variables and
  ~/.netrc can never hijack loopback calls. A one-line alternative, ``client.api.base_url =
  sandbox.url`` (Domain.base_url is a plain public attribute), is covered by a test too, but it only
  redirects the ``api`` domain and breaks if an edge or region is configured.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
import requests
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from local.sandbox import ProviderSandbox
from tests.support.twilio_signature import body_sha256, sign_form, sign_json

ACCOUNT_SID = "AC" + "5a" * 16
AUTH_TOKEN = "sandbox-auth-token-7f3c"
SENDGRID_KEY = "SG.sandbox-key.Zm9vYmFy"
SENDER = "+15017122661"
RECIPIENT = "+15558675310"
FAILING_RECIPIENT = "+15550000000"
SID_PATTERN = re.compile(r"SM[0-9a-f]{32}")


class SandboxTwilioHttpClient(TwilioHttpClient):
    """Sends every Twilio REST call to ``base_url`` instead of https://*.twilio.com."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base = urlsplit(base_url)
        if self.session is not None:
            self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):
        target = urlsplit(url)._replace(scheme=self._base.scheme, netloc=self._base.netloc)
        return super().request(method, urlunsplit(target), *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., ProviderSandbox]]:
    started: list[ProviderSandbox] = []

    def factory(**overrides: Any) -> ProviderSandbox:
        options = {
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "sendgrid_api_key": SENDGRID_KEY,
            **overrides,
        }
        sandbox = ProviderSandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., ProviderSandbox]) -> ProviderSandbox:
    """A sandbox whose messages stay where the API left them (no simulated delivery)."""
    return make_sandbox(simulate_status_callbacks=False)


def twilio_client(sandbox: ProviderSandbox, auth_token: str = AUTH_TOKEN) -> Client:
    return Client(ACCOUNT_SID, auth_token, http_client=SandboxTwilioHttpClient(sandbox.url))


def sendgrid_client(sandbox: ProviderSandbox, api_key: str = SENDGRID_KEY) -> SendGridAPIClient:
    return SendGridAPIClient(api_key, host=sandbox.url)


def recorded(sandbox: ProviderSandbox, provider: str | None = None) -> list[dict[str, Any]]:
    """What a human would see at GET /sandbox/messages."""
    params = {"provider": provider} if provider else None
    response = requests.get(f"{sandbox.url}/sandbox/messages", params=params, timeout=5)
    assert response.status_code == 200
    return response.json()["messages"]


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


def valid_mail(**overrides: Any) -> dict[str, Any]:
    mail: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ada@example.com", "name": "Ada"}]}],
        "from": {"email": "hub@example.org", "name": "Omnihub"},
        "subject": "Your order shipped",
        "content": [
            {"type": "text/plain", "value": "It is on its way."},
            {"type": "text/html", "value": "<p>It is on its way.</p>"},
        ],
    }
    mail.update(overrides)
    return mail


@dataclass
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    params: list[tuple[str, str]]


@dataclass
class CallbackReceiver:
    """A tiny HTTP server standing in for the hub's status-callback endpoint."""

    base_url: str
    received: list[ReceivedCallback] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    received: list[ReceivedCallback] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            received.append(
                ReceivedCallback(self.path, dict(self.headers.items()), parse_qsl(body, keep_blank_values=True))
            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield CallbackReceiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    server.shutdown()
    server.server_close()


def raw_request(sandbox: ProviderSandbox, method: str, path: str, body: bytes = b"", headers=None):
    """A request the clients would never send; returns (status, parsed JSON or None)."""
    parts = urlsplit(sandbox.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    return response.status, (json.loads(payload) if payload else None)


# ---------------------------------------------------------------------------------------------
# Twilio: create, validation, auth, fetch
# ---------------------------------------------------------------------------------------------


def test_sms_create_returns_a_queued_message_and_is_recorded(sandbox: ProviderSandbox) -> None:
    # Given the real twilio client pointed at the sandbox
    client = twilio_client(sandbox)

    # When the hub sends an SMS
    message = client.messages.create(to=RECIPIENT, from_=SENDER, body="Your code is 123456")

    # Then Twilio's Message resource comes back
    assert SID_PATTERN.fullmatch(message.sid)
    assert message.account_sid == ACCOUNT_SID
    assert (message.to, message.from_, message.body) == (RECIPIENT, SENDER, "Your code is 123456")
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert (message.num_segments, message.num_media) == ("1", "0")
    assert message.api_version == "2010-04-01"
    assert message.date_created is not None and message.date_created.utcoffset().total_seconds() == 0
    assert message.error_code is None and message.price is None and message.messaging_service_sid is None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"

    # And humans can see exactly what was sent
    [record] = recorded(sandbox)
    assert record["provider"] == "twilio"
    assert record["id"] == message.sid
    assert record["status"] == "queued"
    assert record["request"] == {"To": RECIPIENT, "From": SENDER, "Body": "Your code is 123456"}
    assert record["callbacks"] == []
    assert record["received_at"].endswith("+00:00")
    assert sandbox.records() == [record]


def test_whatsapp_pair_with_media_is_accepted_as_mms(sandbox: ProviderSandbox) -> None:
    client = twilio_client(sandbox)

    message = client.messages.create(
        to=f"whatsapp:{RECIPIENT}",
        from_=f"whatsapp:{SENDER}",
        media_url=["https://example.com/a.png", "https://example.com/b.png"],
    )

    assert re.fullmatch(r"MM[0-9a-f]{32}", message.sid)
    assert message.num_media == "2"
    [record] = recorded(sandbox, provider="twilio")
    assert record["request"]["MediaUrl"] == ["https://example.com/a.png", "https://example.com/b.png"]


@pytest.mark.parametrize(
    ("to", "from_"),
    [(f"whatsapp:{RECIPIENT}", SENDER), (RECIPIENT, f"whatsapp:{SENDER}")],
    ids=["whatsapp-to-sms-from", "sms-to-whatsapp-from"],
)
def test_whatsapp_and_sms_mismatch_is_rejected(sandbox: ProviderSandbox, to: str, from_: str) -> None:
    client = twilio_client(sandbox)

    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=to, from_=from_, body="hello")

    assert raised.value.status == 400
    assert raised.value.code == 21910
    assert recorded(sandbox) == []


def test_whatsapp_to_through_a_messaging_service_is_accepted(sandbox: ProviderSandbox) -> None:
    service_sid = "MG" + "0f" * 16

    message = twilio_client(sandbox).messages.create(
        to=f"whatsapp:{RECIPIENT}", messaging_service_sid=service_sid, body="hello"
    )

    assert message.status == "accepted"
    assert message.messaging_service_sid == service_sid
    assert message.from_ is None
    assert message.num_segments == "0"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": RECIPIENT, "from_": SENDER}, 21602),
        ({"to": RECIPIENT, "from_": SENDER, "body": ""}, 21602),
        ({"to": RECIPIENT, "messaging_service_sid": "MG" + "0f" * 16}, 21619),
        ({"to": "", "from_": SENDER, "body": "hi"}, 21604),
        ({"to": RECIPIENT, "body": "hi"}, 21603),
        ({"to": "555-1234", "from_": SENDER, "body": "hi"}, 21211),
        ({"to": RECIPIENT, "from_": "not a sender!", "body": "hi"}, 21212),
        ({"to": RECIPIENT, "from_": SENDER, "body": "x" * 1601}, 21617),
        ({"to": RECIPIENT, "from_": SENDER, "media_url": ["ftp://example.com/a.png"]}, 21620),
        ({"to": RECIPIENT, "from_": SENDER, "media_url": [f"https://e.com/{i}" for i in range(11)]}, 21623),
        ({"to": RECIPIENT, "from_": SENDER, "body": "hi", "status_callback": "not-a-url"}, 21609),
        ({"to": RECIPIENT, "messaging_service_sid": "MG123", "body": "hi"}, 21705),
    ],
    ids=[
        "no-body",
        "empty-body",
        "no-content-via-service",
        "no-to",
        "no-from",
        "to-not-e164",
        "bad-from",
        "body-too-long",
        "media-not-http",
        "too-much-media",
        "bad-status-callback",
        "bad-service-sid",
    ],
)
def test_invalid_create_is_rejected_with_twilios_code(
    sandbox: ProviderSandbox, kwargs: dict[str, Any], code: int
) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(sandbox).messages.create(**kwargs)

    assert (raised.value.status, raised.value.code) == (400, code)
    assert recorded(sandbox) == []


def test_body_of_exactly_1600_characters_is_accepted(sandbox: ProviderSandbox) -> None:
    message = twilio_client(sandbox).messages.create(to=RECIPIENT, from_=SENDER, body="x" * 1600)

    assert len(message.body) == 1600
    assert message.num_segments == "11"  # GSM-7: 153 characters per concatenated segment


def test_missing_body_error_has_twilios_error_shape(sandbox: ProviderSandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data={"To": RECIPIENT, "From": SENDER},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json() == {
        "code": 21602,
        "message": "Message body is required.",
        "more_info": "https://www.twilio.com/docs/errors/21602",
        "status": 400,
    }


def test_json_body_is_ignored_like_twilio_does(sandbox: ProviderSandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        json={"To": RECIPIENT, "From": SENDER, "Body": "hi"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert (response.status_code, response.json()["code"]) == (400, 21604)


def test_wrong_auth_token_is_rejected_with_20003(sandbox: ProviderSandbox) -> None:
    client = twilio_client(sandbox, auth_token="not-the-token")

    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=RECIPIENT, from_=SENDER, body="hello")

    assert raised.value.status == 401
    assert raised.value.code == 20003
    assert recorded(sandbox) == []


def test_account_sid_in_path_must_match_the_credentials(sandbox: ProviderSandbox) -> None:
    other_account = "AC" + "0" * 32

    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{other_account}/Messages.json",
        data={"To": RECIPIENT, "From": SENDER, "Body": "hi"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_fetch_by_sid_returns_the_message_and_unknown_sid_is_404(sandbox: ProviderSandbox) -> None:
    client = twilio_client(sandbox)
    created = client.messages.create(to=RECIPIENT, from_=SENDER, body="fetch me")

    fetched = client.messages(created.sid).fetch()

    assert (fetched.sid, fetched.body, fetched.status, fetched.to) == (created.sid, "fetch me", "queued", RECIPIENT)
    with pytest.raises(TwilioRestException) as raised:
        client.messages("SM" + "0" * 32).fetch()
    assert (raised.value.status, raised.value.code) == (404, 20404)


def test_list_returns_newest_first(sandbox: ProviderSandbox) -> None:
    client = twilio_client(sandbox)
    first = client.messages.create(to=RECIPIENT, from_=SENDER, body="one")
    second = client.messages.create(to=RECIPIENT, from_=SENDER, body="two")

    listed = client.messages.list(to=RECIPIENT)

    assert [m.sid for m in listed] == [second.sid, first.sid]


def test_base_url_attribute_is_an_alternative_way_to_point_the_client(sandbox: ProviderSandbox) -> None:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = sandbox.url

    message = client.messages.create(to=RECIPIENT, from_=SENDER, body="via base_url")

    assert [r["id"] for r in recorded(sandbox)] == [message.sid]


# ---------------------------------------------------------------------------------------------
# Twilio: simulated delivery and signed status callbacks
# ---------------------------------------------------------------------------------------------


def test_status_callbacks_arrive_signed_sent_then_delivered(
    make_sandbox: Callable[..., ProviderSandbox], receiver: CallbackReceiver
) -> None:
    # Given a sandbox simulating delivery and a callback URL with a query string
    sandbox = make_sandbox()
    callback_url = f"{receiver.base_url}/twilio/status?tenant=acme&channel=sms"

    # When a message is sent with that StatusCallback
    message = twilio_client(sandbox).messages.create(
        to=RECIPIENT, from_=SENDER, body="track me", status_callback=callback_url
    )

    # Then Twilio's callbacks arrive in order, with Twilio's parameters
    wait_for(lambda: len(receiver.received) >= 2)
    assert [dict(c.params)["MessageStatus"] for c in receiver.received] == ["sent", "delivered"]
    sent = dict(receiver.received[0].params)
    assert sent == {
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "MessageStatus": "sent",
        "SmsStatus": "sent",
        "AccountSid": ACCOUNT_SID,
        "From": SENDER,
        "To": RECIPIENT,
        "ApiVersion": "2010-04-01",
    }
    assert receiver.received[0].path == "/twilio/status?tenant=acme&channel=sms"

    # And each is signed over the callback URL as given plus the sorted parameters
    validator = RequestValidator(AUTH_TOKEN)
    for callback in receiver.received:
        signature = callback.headers["X-Twilio-Signature"]
        assert signature == sign_form(callback_url, callback.params, AUTH_TOKEN)
        assert validator.validate(callback_url, dict(callback.params), signature)
        assert not validator.validate(callback_url, {**dict(callback.params), "To": "+10000000001"}, signature)
        assert callback.headers["Content-Type"] == "application/x-www-form-urlencoded"

    # And the message and its record show the final status and the delivery outcome
    wait_for(lambda: len(sandbox.records()[0]["callbacks"]) == 2)
    [record] = recorded(sandbox)
    assert record["status"] == "delivered"
    assert record["callbacks"] == [
        {"status": "sent", "http_status": 200, "error": None},
        {"status": "delivered", "http_status": 200, "error": None},
    ]
    fetched = twilio_client(sandbox).messages(message.sid).fetch()
    assert fetched.status == "delivered"
    assert fetched.date_sent is not None


def test_number_ending_in_0000_goes_sent_then_undelivered_with_30003(
    make_sandbox: Callable[..., ProviderSandbox], receiver: CallbackReceiver
) -> None:
    sandbox = make_sandbox()
    callback_url = f"{receiver.base_url}/status"

    message = twilio_client(sandbox).messages.create(
        to=FAILING_RECIPIENT, from_=SENDER, body="doomed", status_callback=callback_url
    )

    assert message.status == "queued"
    wait_for(lambda: len(receiver.received) >= 2)
    statuses = [dict(c.params)["MessageStatus"] for c in receiver.received]
    assert statuses == ["sent", "undelivered"]
    undelivered = dict(receiver.received[1].params)
    assert undelivered["ErrorCode"] == "30003"
    assert "ErrorCode" not in dict(receiver.received[0].params)
    assert RequestValidator(AUTH_TOKEN).validate(
        callback_url, undelivered, receiver.received[1].headers["X-Twilio-Signature"]
    )
    fetched = twilio_client(sandbox).messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)


def test_messaging_service_message_also_reports_queued_and_gets_a_sender(
    make_sandbox: Callable[..., ProviderSandbox], receiver: CallbackReceiver
) -> None:
    sandbox = make_sandbox()
    service_sid = "MG" + "ab" * 16

    twilio_client(sandbox).messages.create(
        to=RECIPIENT, messaging_service_sid=service_sid, body="hi", status_callback=f"{receiver.base_url}/s"
    )

    wait_for(lambda: len(receiver.received) >= 3)
    params = [dict(c.params) for c in receiver.received]
    assert [p["MessageStatus"] for p in params] == ["queued", "sent", "delivered"]
    assert {p["MessagingServiceSid"] for p in params} == {service_sid}
    assert all(p["From"] for p in params)


def test_unreachable_callback_url_is_recorded_and_the_sandbox_keeps_serving(
    make_sandbox: Callable[..., ProviderSandbox],
) -> None:
    sandbox = make_sandbox()
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        dead_url = f"http://127.0.0.1:{closed.server_address[1]}/status"  # closed once the block ends

    twilio_client(sandbox).messages.create(to=RECIPIENT, from_=SENDER, body="hi", status_callback=dead_url)

    callbacks = wait_for(lambda: len(sandbox.records()[0]["callbacks"]) == 2 and sandbox.records()[0]["callbacks"])
    assert [c["status"] for c in callbacks] == ["sent", "delivered"]
    assert all(c["http_status"] is None and c["error"] for c in callbacks)
    assert requests.get(f"{sandbox.url}/sandbox/health", timeout=5).json() == {"status": "ok"}


def test_callback_answered_with_an_error_status_is_recorded(
    make_sandbox: Callable[..., ProviderSandbox],
) -> None:
    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    sandbox = make_sandbox()
    with ThreadingHTTPServer(("127.0.0.1", 0), Failing) as server:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/status"
        twilio_client(sandbox).messages.create(to=RECIPIENT, from_=SENDER, body="hi", status_callback=url)
        callbacks = wait_for(lambda: len(sandbox.records()[0]["callbacks"]) == 2 and sandbox.records()[0]["callbacks"])
        server.shutdown()

    assert callbacks == [
        {"status": "sent", "http_status": 500, "error": "HTTP 500"},
        {"status": "delivered", "http_status": 500, "error": "HTTP 500"},
    ]


# ---------------------------------------------------------------------------------------------
# The signature helper in tests/support, cross-checked against twilio's RequestValidator
# ---------------------------------------------------------------------------------------------


def test_sign_form_matches_twilio_validator_including_repeated_keys() -> None:
    url = "https://hub.example.com/twilio/inbound?tenant=acme"
    params = [("To", RECIPIENT), ("MediaUrl0", "https://x/1"), ("Body", "héllo & bye"), ("From", SENDER)]

    class MultiDict(dict):
        def __init__(self, pairs: list[tuple[str, str]]) -> None:
            super().__init__(pairs)
            self.pairs = pairs

        def getlist(self, name: str) -> list[str]:
            return [v for k, v in self.pairs if k == name]

    repeated = [("Tag", "b"), ("Body", "x"), ("Tag", "a")]

    validator = RequestValidator(AUTH_TOKEN)
    assert validator.validate(url, dict(params), sign_form(url, params, AUTH_TOKEN))
    assert sign_form(url, params, AUTH_TOKEN) == sign_form(url, dict(params), AUTH_TOKEN)
    assert validator.validate(url, MultiDict(repeated), sign_form(url, repeated, AUTH_TOKEN))
    assert not validator.validate(url, dict(params), sign_form(url, params, "another-token"))


def test_sign_json_matches_twilio_validator() -> None:
    body = b'{"MessageSid": "SM123", "MessageStatus": "delivered"}'
    url = f"https://hub.example.com/twilio/events?bodySHA256={body_sha256(body)}"

    signature = sign_json(url, AUTH_TOKEN)

    validator = RequestValidator(AUTH_TOKEN)
    assert re.fullmatch(r"[0-9a-f]{64}", body_sha256(body))
    assert body_sha256(body) == validator.compute_hash(body.decode())
    assert validator.validate(url, body.decode(), signature)
    assert not validator.validate(url, body.decode().replace("delivered", "failed"), signature)


# ---------------------------------------------------------------------------------------------
# SendGrid
# ---------------------------------------------------------------------------------------------


def test_sendgrid_send_returns_202_with_message_id_and_is_recorded(sandbox: ProviderSandbox) -> None:
    # Given the real SendGrid client pointed at the sandbox
    client = sendgrid_client(sandbox)
    mail = valid_mail()

    # When the hub sends an email
    response = client.send(mail)

    # Then SendGrid's 202 comes back with an X-Message-Id and no body
    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)

    # And the exact JSON body is recorded under that id
    [record] = recorded(sandbox, provider="sendgrid")
    assert record["id"] == message_id
    assert record["status"] == "accepted"
    assert record["request"] == mail
    assert recorded(sandbox, provider="twilio") == []


def test_sendgrid_mail_helper_payload_is_accepted(sandbox: ProviderSandbox) -> None:
    from sendgrid.helpers.mail import Mail

    mail = Mail(
        from_email="hub@example.org",
        to_emails="ada@example.com",
        subject="Hello",
        plain_text_content="Plain body",
        html_content="<b>Html body</b>",
    )

    response = sendgrid_client(sandbox).send(mail)

    assert response.status_code == 202
    assert recorded(sandbox)[0]["request"]["content"][0] == {"type": "text/plain", "value": "Plain body"}


def test_sendgrid_template_send_needs_neither_subject_nor_content(sandbox: ProviderSandbox) -> None:
    mail = valid_mail(template_id="d-0123456789abcdef0123456789abcdef")
    del mail["subject"], mail["content"]

    assert sendgrid_client(sandbox).send(mail).status_code == 202


def test_sendgrid_wrong_key_is_rejected_with_401(sandbox: ProviderSandbox) -> None:
    client = sendgrid_client(sandbox, api_key="SG.wrong")

    with pytest.raises(UnauthorizedError) as raised:
        client.send(valid_mail())

    assert raised.value.status_code == 401
    [error] = json.loads(raised.value.body)["errors"]
    assert error["field"] is None
    assert "authorization grant is invalid" in error["message"]
    assert recorded(sandbox) == []


def test_sendgrid_missing_from_subject_and_content_are_all_reported(sandbox: ProviderSandbox) -> None:
    mail = valid_mail()
    del mail["from"], mail["subject"], mail["content"]

    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client(sandbox).send(mail)

    assert raised.value.status_code == 400
    errors = json.loads(raised.value.body)["errors"]
    assert {e["field"] for e in errors} == {"from.email", "subject", "content"}
    assert all(set(e) == {"message", "field", "help"} and e["message"] for e in errors)
    assert recorded(sandbox) == []


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"personalizations": []}, {"personalizations"}),
        ({"personalizations": [{"cc": [{"email": "x@example.com"}]}]}, {"personalizations.0.to"}),
        ({"personalizations": [{"to": [{"email": "not-an-address"}]}]}, {"personalizations.0.to.0.email"}),
        ({"from": {"email": "nope"}}, {"from.email"}),
        ({"content": [{"type": "text/plain", "value": ""}]}, {"content.0.value"}),
        ({"content": [{"type": "text/html", "value": "<p>"}, {"type": "text/plain", "value": "p"}]}, {"content"}),
        (
            {"personalizations": [{"to": [{"email": "a@example.com"}], "cc": [{"email": "A@example.com"}]}]},
            {"personalizations.0"},
        ),
    ],
    ids=["no-personalizations", "no-to", "bad-to", "bad-from", "empty-content", "html-before-plain", "duplicate"],
)
def test_sendgrid_invalid_mail_names_the_field(
    sandbox: ProviderSandbox, overrides: dict[str, Any], fields: set[str]
) -> None:
    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client(sandbox).send(valid_mail(**overrides))

    assert {e["field"] for e in json.loads(raised.value.body)["errors"]} == fields


def test_sendgrid_subject_in_every_personalization_replaces_the_top_level_one(sandbox: ProviderSandbox) -> None:
    mail = valid_mail(personalizations=[{"to": [{"email": "a@example.com"}], "subject": "Per recipient"}])
    del mail["subject"]

    assert sendgrid_client(sandbox).send(mail).status_code == 202


def test_sendgrid_malformed_json_is_a_400_in_sendgrids_shape(sandbox: ProviderSandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/v3/mail/send",
        data=b'{"personalizations": [',
        headers={"Authorization": f"Bearer {SENDGRID_KEY}", "Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}


# ---------------------------------------------------------------------------------------------
# Sandbox endpoints and robustness
# ---------------------------------------------------------------------------------------------


def test_health_unknown_paths_and_wrong_methods(sandbox: ProviderSandbox) -> None:
    assert requests.get(f"{sandbox.url}/sandbox/health", timeout=5).json() == {"status": "ok"}

    unknown = requests.get(f"{sandbox.url}/nowhere", timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["status"] == 404

    wrong_method = requests.put(f"{sandbox.url}/sandbox/messages", timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, DELETE"

    twilio_wrong = requests.delete(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    assert (twilio_wrong.status_code, twilio_wrong.json()["code"]) == (405, 20004)

    twilio_unknown = requests.get(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )
    assert (twilio_unknown.status_code, twilio_unknown.json()["code"]) == (404, 20404)

    sendgrid_wrong = requests.get(
        f"{sandbox.url}/v3/mail/send", headers={"Authorization": f"Bearer {SENDGRID_KEY}"}, timeout=5
    )
    assert sendgrid_wrong.status_code == 405
    assert sendgrid_wrong.json()["errors"][0]["message"] == "method not allowed"


def test_delete_clears_and_provider_filter_selects(sandbox: ProviderSandbox) -> None:
    twilio_client(sandbox).messages.create(to=RECIPIENT, from_=SENDER, body="hi")
    sendgrid_client(sandbox).send(valid_mail())
    assert [r["provider"] for r in recorded(sandbox)] == ["twilio", "sendgrid"]
    assert [r["provider"] for r in recorded(sandbox, provider="sendgrid")] == ["sendgrid"]
    assert requests.get(f"{sandbox.url}/sandbox/messages?provider=fax", timeout=5).status_code == 400

    cleared = requests.delete(f"{sandbox.url}/sandbox/messages", timeout=5)

    assert cleared.json() == {"cleared": 2}
    assert recorded(sandbox) == []
    assert sandbox.records() == []


def test_hostile_input_never_yields_500_or_stderr_output(
    sandbox: ProviderSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    twilio_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    basic = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    form = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}
    bearer = {"Authorization": f"Bearer {SENDGRID_KEY}"}
    cases = [
        ("POST", twilio_path, b"\xff\xfe\x00garbage", form, 400),
        ("POST", twilio_path, b"To=%ZZ&From=%&Body", form, 400),
        ("POST", twilio_path, b"To=" + b"9" * 5000, form, 400),
        ("POST", twilio_path, b"", {"Authorization": "Basic !!!notbase64"}, 401),
        ("POST", twilio_path, b"", {"Authorization": "Bearer x"}, 401),
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/..%2F..%2Fetc.json", b"", form, 404),
        ("POST", "/v3/mail/send", b"\xff\xff", bearer, 400),
        ("POST", "/v3/mail/send", b"[1, 2, 3]", bearer, 400),
        ("POST", "/v3/mail/send", b"[" * 100_000, bearer, 400),
        ("POST", "/v3/mail/send", json.dumps({"personalizations": "nope", "content": 5}).encode(), bearer, 400),
        ("POST", "/v3/mail/send", json.dumps({"personalizations": [1, {"to": "x"}], "from": []}).encode(), bearer, 400),
        ("POST", "/v3/mail/send", b"{}", {"Authorization": "Bearer"}, 401),
        ("POST", "/v3/mail/send", b"{}", {}, 401),
        ("POST", "/v3/other", b"{}", bearer, 404),
        ("PATCH", "/sandbox/health", b"", {}, 405),
        ("BREW", "/sandbox/messages", b"", {}, 405),
        ("GET", "/sandbox/messages?provider=%ff", b"", {}, 400),
        ("GET", "/%00/../x", b"", {}, 404),
        ("OPTIONS", "*", b"", {}, 404),
    ]
    for method, path, body, headers, expected in cases:
        status, payload = raw_request(sandbox, method, path, body, headers)
        assert status == expected, (method, path, status, payload)
        assert isinstance(payload, dict), (method, path)

    bad_length, _ = raw_request(sandbox, "POST", "/v3/mail/send", b"", {**bearer, "Content-Length": "-5"})
    assert bad_length == 400
    assert recorded(sandbox) == []
    assert capfd.readouterr().err == ""


def test_chunked_form_body_is_read(sandbox: ProviderSandbox) -> None:
    def chunks() -> Iterator[bytes]:
        yield f"To=%2B{RECIPIENT[1:]}&".encode()
        yield f"From=%2B{SENDER[1:]}&Body=chunked".encode()

    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    )

    assert response.status_code == 201
    assert response.json()["body"] == "chunked"


def test_stop_is_idempotent_and_url_requires_start() -> None:
    sandbox = ProviderSandbox(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, sendgrid_api_key=SENDGRID_KEY
    )
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    with sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)
    sandbox.stop()
