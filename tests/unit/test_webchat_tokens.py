"""Web chat, pure: session tokens (signed, expiring, tamper-proof), the business's sign-in JWT
(HS256 only), message ids scoped to their visitor, what a visitor may see, and replies on web chat."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from chalicelib.channels import webchat
from chalicelib.channels.webchat import IdentityRejected, Session, SessionRejected
from chalicelib.domain.channel_rules import check_content
from chalicelib.domain.customers import Customer
from chalicelib.domain.identity import Identity, IdentityKind
from chalicelib.domain.ids import new_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Media, Message
from chalicelib.domain.replies import RefusalKind, Refused, choose_channel, recipient_for
from tests.support.channel_rules import rules_for
from tests.support.reply_plans import plan_reply

SECRET = "unit-webchat-session-secret-0123456789"
JWT_SECRET = "unit-webchat-jwt-secret-" + "0123456789abcdef" * 4
NOW = 1_760_000_000
TOKEN_SHAPE = re.compile(r"^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def session(**overrides: Any) -> Session:
    fields: dict[str, Any] = {
        "visitor": Identity(kind=IdentityKind.WEBCHAT, value="vis_01JABCDEFGHJKMNPQRSTVWXYZ0"),
        "now": NOW,
        "ttl_seconds": 3600,
        "customer_id": new_id("cus"),
        "conversation_id": new_id("conv"),
    }
    fields.update(overrides)
    visitor = fields.pop("visitor")
    return webchat.new_session(visitor, **fields)


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret.encode(), f"v1.{payload}".encode(), hashlib.sha256).digest())
    return f"v1.{payload}.{signature}"


# --- Session tokens ---------------------------------------------------------------------------


def test_a_session_token_round_trips_its_claims_in_the_v1_format() -> None:
    original = session(profile_name="Ada", pending=(Identity(kind=IdentityKind.EMAIL, value="ada@example.com"),))

    token = webchat.sign_session(original, SECRET)

    assert TOKEN_SHAPE.match(token)
    assert webchat.read_session(token, SECRET, NOW + 10) == original
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert set(claims) == {"sub", "cus", "conv", "iat", "exp", "name", "link"}
    assert claims["sub"] == "webchat#vis_01JABCDEFGHJKMNPQRSTVWXYZ0"
    assert claims["exp"] - claims["iat"] == 3600


def test_an_anonymous_visitor_has_no_customer_until_the_first_message() -> None:
    visitor = webchat.new_visitor()
    fresh = webchat.new_session(visitor, now=NOW, ttl_seconds=60)

    read = webchat.read_session(webchat.sign_session(fresh, SECRET), SECRET, NOW)

    assert visitor.kind is IdentityKind.WEBCHAT and visitor.value.startswith("vis_")
    assert (read.customer_id, read.conversation_id, read.signed_in) == (None, None, False)
    assert read.expires_at_iso == datetime.fromtimestamp(NOW + 60, tz=UTC).isoformat().replace("+00:00", "Z")


def test_an_expired_session_token_is_refused() -> None:
    token = webchat.sign_session(session(ttl_seconds=60), SECRET)

    assert webchat.read_session(token, SECRET, NOW + 59).customer_id
    with pytest.raises(SessionRejected, match="expired"):
        webchat.read_session(token, SECRET, NOW + 60)


def tampered_tokens(token: str) -> list[str]:
    version, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    other_customer = b64(json.dumps({**claims, "cus": new_id("cus")}).encode())
    longer = b64(json.dumps({**claims, "exp": claims["exp"] + 10**6}).encode())
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        f"{version}.{other_customer}.{signature}",
        f"{version}.{longer}.{signature}",
        f"{version}.{payload}.{flipped}",
        f"v2.{payload}.{signature}",
        f"{version}.{payload}",
        f"{version}.{payload}.{signature}.extra",
        f"{version}.{payload}.{signature}=",
        f"{version}.{payload}.",
        f"{version}..{signature}",
        "",
        "v1..",
        "not a token",
        "v1.é.x",
        "v1." + "A" * 5000 + ".x",
    ]


def test_a_tampered_or_malformed_session_token_is_refused() -> None:
    token = webchat.sign_session(session(), SECRET)
    for bad in tampered_tokens(token):
        with pytest.raises(SessionRejected):
            webchat.read_session(bad, SECRET, NOW)
    with pytest.raises(SessionRejected, match="signature"):
        webchat.read_session(token, SECRET + "-other", NOW)
    with pytest.raises(SessionRejected):
        webchat.read_session(None, SECRET, NOW)
    with pytest.raises(SessionRejected):
        webchat.read_session(token, "", NOW)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "phone#+15017122661", "iat": NOW, "exp": NOW + 60},  # not a visitor identity
        {"sub": "webchat#", "iat": NOW, "exp": NOW + 60},
        {"sub": "nobody", "iat": NOW, "exp": NOW + 60},
        {"sub": "webchat#vis_1", "iat": NOW, "exp": "tomorrow"},
        {"sub": "webchat#vis_1", "iat": NOW, "exp": NOW + 60, "cus": "cus_../../x"},
        {"sub": "webchat#vis_1", "iat": NOW, "exp": NOW + 60, "conv": 42},
        {"sub": "webchat#vis_1", "iat": NOW + 3600, "exp": NOW + 7200},  # issued in the future
        {"sub": "webchat#vis_1", "exp": NOW + 60},
        ["not", "an", "object"],
    ],
)
def test_signed_but_unusable_claims_are_refused(claims: Any) -> None:
    with pytest.raises(SessionRejected):
        webchat.read_session(signed(claims), SECRET, NOW)


def test_the_bearer_token_is_read_from_the_authorization_header() -> None:
    assert webchat.bearer_token("Bearer v1.a.b") == "v1.a.b"
    assert webchat.bearer_token("bearer   v1.a.b ") == "v1.a.b"
    assert webchat.bearer_token("Basic dXNlcg==") is None
    assert webchat.bearer_token("Bearer ") is None
    assert webchat.bearer_token(None) is None


# --- The business's sign-in JWT -----------------------------------------------------------------


def identity_token(claims: dict[str, Any] | None = None, secret: str = JWT_SECRET, **header: Any) -> str:
    now = int(time.time())
    body = {"sub": "crm-42", "iat": now, "exp": now + 300, **(claims or {})}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256", headers=header)


def test_a_valid_identity_token_names_the_business_customer_and_their_contacts() -> None:
    token = identity_token({"email": "Ada@Example.com", "phone": "(501) 712-2661", "name": " Ada L. "})

    sign_in = webchat.verify_identity_token(token, JWT_SECRET)

    assert sign_in.identity == Identity(kind=IdentityKind.EXTERNAL, value="crm-42")
    assert sign_in.name == "Ada L."
    assert [i.key for i in sign_in.claimed("US")] == ["email#ada@example.com", "phone#+15017122661"]


def unsigned(claims: dict[str, Any], alg: str) -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def test_only_hs256_is_accepted_never_none_or_another_algorithm() -> None:
    now = int(time.time())
    claims = {"sub": "crm-42", "exp": now + 300}
    hs512 = jwt.encode(claims, JWT_SECRET, algorithm="HS512")
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    # An RS256 header over an HMAC signature made with the shared secret (the key-confusion trick).
    confused = f"{header}.{payload}." + b64(
        hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    )
    for token in (unsigned(claims, "none"), unsigned(claims, "None"), unsigned(claims, "HS256"), hs512, confused):
        with pytest.raises(IdentityRejected):
            webchat.verify_identity_token(token, JWT_SECRET)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "invalid"),
        ({"sub": None}, "invalid"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"iat": int(time.time()) + 3600}, "not yet valid"),
        ({"sub": "x" * 201}, "sub"),
        ({"sub": "crm\n42"}, "sub"),
        ({"email": 42}, "email"),
    ],
)
def test_an_expired_immature_or_incomplete_identity_token_is_refused(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(IdentityRejected, match=reason):
        webchat.verify_identity_token(identity_token(claims), JWT_SECRET)


def test_small_clock_skew_is_tolerated() -> None:
    now = int(time.time())
    token = identity_token({"iat": now + 20, "nbf": now + 20, "exp": now - 20})
    assert webchat.verify_identity_token(token, JWT_SECRET).external_id == "crm-42"


def test_a_forged_or_altered_identity_token_is_refused() -> None:
    good = identity_token()
    header, _payload, signature = good.split(".")
    other = b64(json.dumps({"sub": "crm-1", "exp": int(time.time()) + 300}).encode())
    for bad in (identity_token(secret="not-the-business-secret-0123456789"), f"{header}.{other}.{signature}", "x", ""):
        with pytest.raises(IdentityRejected):
            webchat.verify_identity_token(bad, JWT_SECRET)
    with pytest.raises(IdentityRejected):
        webchat.verify_identity_token(good, "")


# --- Messages -------------------------------------------------------------------------------------


def test_a_client_id_is_scoped_to_its_visitor() -> None:
    ada = Identity(kind=IdentityKind.WEBCHAT, value="vis_A")
    bob = Identity(kind=IdentityKind.EXTERNAL, value="crm-7")

    assert webchat.provider_message_id(ada, "c-1") != webchat.provider_message_id(bob, "c-1")
    assert webchat.provider_message_id(ada, "c-1") == webchat.provider_message_id(ada, "c-1")
    assert webchat.provider_message_id(ada, None) != webchat.provider_message_id(ada, None)
    for bad in ("", "a:b", "x" * 65, "a b"):
        with pytest.raises(ValueError):
            webchat.provider_message_id(ada, bad)


def test_a_visitor_message_is_an_inbound_webchat_message_from_the_visitor() -> None:
    visitor_session = session(profile_name="Ada")
    at = datetime(2025, 3, 1, tzinfo=UTC)

    msg = webchat.inbound_message(visitor_session, "Hello", "c-1", at)

    assert (msg.provider, msg.channel, msg.sender, msg.body) == (
        "webchat",
        Channel.WEBCHAT,
        visitor_session.visitor,
        "Hello",
    )
    assert msg.provider_message_id == "webchat#vis_01JABCDEFGHJKMNPQRSTVWXYZ0:c-1"
    assert (msg.profile_name, msg.received_at) == ("Ada", at)


def thread_message(direction: Direction, **overrides: Any) -> Message:
    message_id = new_id("msg")
    fields: dict[str, Any] = {
        "id": message_id,
        "conversation_id": "conv_1",
        "customer_id": "cus_1",
        "channel": Channel.SMS,
        "direction": direction,
        "body": "hi",
        "status": DeliveryStatus.DELIVERED,
        "created_at": datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
        "provider": "twilio",
        "provider_message_id": "SM123",
        "sender_address": "+15017122661",
        "recipient_address": "+14155238886",
        "agent_id": "grace",
        "error_code": "30003",
        "media": [Media(url="https://example.com/a.jpg", content_type="image/jpeg", size=10, content_id="x")],
    }
    fields.update(overrides)
    return Message(**fields)


def test_the_visitor_sees_only_safe_fields_and_no_internal_notes() -> None:
    message = thread_message(Direction.OUTBOUND)

    view = webchat.visitor_view(message)

    assert view == {
        "id": message.id,
        "direction": "outbound",
        "channel": "sms",
        "body": "hi",
        "created_at": "2025-03-01T12:00:00.123Z",
        "media": [{"url": "https://example.com/a.jpg", "content_type": "image/jpeg", "filename": None}],
        "choices": [],
    }
    assert webchat.visible_to_visitor(thread_message(Direction.INBOUND))
    assert not webchat.visible_to_visitor(thread_message(Direction.EVENT))


# --- Replies on web chat (domain) -------------------------------------------------------------------


def customer(**overrides: Any) -> Customer:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": "cus_1",
        "conversation_id": "conv_1",
        "identities": [Identity(kind=IdentityKind.WEBCHAT, value="vis_1")],
        "last_channel": Channel.WEBCHAT,
        "last_inbound_by_channel": {"webchat": at},
        "created_at": at,
        "updated_at": at,
    }
    fields.update(overrides)
    return Customer(**fields)


def test_web_chat_is_a_reply_channel_for_customers_who_opened_the_chat() -> None:
    visitor = customer()
    signed_in = customer(
        identities=[Identity(kind=IdentityKind.EXTERNAL, value="crm-42")], last_channel=None, last_inbound_by_channel={}
    )

    assert choose_channel(None, visitor) is Channel.WEBCHAT
    assert choose_channel("webchat", signed_in) is Channel.WEBCHAT
    assert recipient_for(Channel.WEBCHAT, visitor) == "vis_1"
    assert recipient_for(Channel.WEBCHAT, signed_in) == "crm-42"
    with pytest.raises(Refused) as refused:
        choose_channel("webchat", customer(identities=[], last_inbound_by_channel={}))
    assert (refused.value.kind, refused.value.code) == (RefusalKind.UNPROCESSABLE, "unsupported_channel")
    assert "sms, whatsapp, email" in refused.value.message and "webchat" not in refused.value.message.split("use")[1]


def test_a_web_chat_reply_is_planned_without_a_provider_and_within_the_page_limit() -> None:
    at = datetime(2025, 3, 1, tzinfo=UTC)

    plan = plan_reply(
        channel=Channel.WEBCHAT,
        customer=customer(),
        body="Hi!",
        media_urls=[],
        subject=None,
        now=at + timedelta(days=9),
    )

    assert (plan.provider, plan.recipient, plan.body) == ("webchat", "vis_1", "Hi!")
    check_content(Channel.WEBCHAT, rules_for(Channel.WEBCHAT), "x" * 4000, [], None)
    with pytest.raises(Refused) as too_long:
        check_content(Channel.WEBCHAT, rules_for(Channel.WEBCHAT), "x" * 4001, [], None)
    assert too_long.value.code == "body_too_long"
    with pytest.raises(Refused) as with_subject:
        check_content(Channel.WEBCHAT, rules_for(Channel.WEBCHAT), "hi", [], "Subject")
    assert with_subject.value.code == "subject_not_supported"
