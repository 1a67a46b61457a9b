"""Web chat, the business's own channel: visitor session tokens, sign-in tokens, message shapes.

Pure code, no I/O. Two kinds of token are handled here, and both are bearer secrets: they are
never logged, and errors say why a token was refused without repeating it.

* A **session token** is what the hub gives a visitor's page: `v1.<payload>.<signature>`, both
  parts base64url without padding, the signature an HMAC-SHA256 of `v1.<payload>` with
  `WEBCHAT_SESSION_SECRET`, checked in constant time. Its claims: `sub` (the visitor's identity
  key, `webchat#vis_...` for an anonymous visitor, `external#<id>` for a signed-in one), `cus`
  and `conv` (the customer and conversation it belonged to when issued; null until the first
  message creates them), `iat`, `exp`, and for a signed-in visitor not yet known to the hub,
  `name` and `link` (identities from the sign-in to link once the customer exists).
* An **identity token** is a JWT the business signs (HS256 with `WEBCHAT_JWT_SECRET`) to say
  who the visitor is: `sub` is the business's own customer id; `email`, `phone` and `name` are
  optional. Only HS256 is accepted (never `none`, never another algorithm); `exp` is required,
  `nbf` and `iat` are honoured, all with a small leeway for clock skew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.channels.base import Outgoing
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import Identity, IdentityKind, InvalidIdentity, email_identity, phone_identity
from chalicelib.domain.ids import id_datetime, is_id, new_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, InboundMessage, Message
from chalicelib.domain.replies import SentMessage

PROVIDER = "webchat"
# The hub's own channel: the page shows what a visitor may send (4,000 characters), and no window.
RULES = {Channel.WEBCHAT.value: ChannelRules(name="web chat", body_chars=4000, media=10)}
RECIPIENT = "webchat"  # the hub's side of a web chat message
SESSION_FORMAT = "v1"
MAX_SESSION_TOKEN_CHARS = 4096
MAX_IDENTITY_TOKEN_CHARS = 4096
MAX_BODY_CHARS = 4000
MAX_EXTERNAL_ID_CHARS = 200
MAX_NAME_CHARS = 200
JWT_ALGORITHM = "HS256"
JWT_LEEWAY_SECONDS = 60
# A session token minted by a clock a little ahead of this one is still fine.
CLOCK_SKEW_SECONDS = 60
VISITOR_KINDS = (IdentityKind.WEBCHAT, IdentityKind.EXTERNAL)
VISIBLE_DIRECTIONS = (Direction.INBOUND, Direction.OUTBOUND)

CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class SessionRejected(Exception):
    """The session token is missing, malformed, forged, altered or expired: answer 401.
    `reason` is for the log; it never contains the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdentityRejected(Exception):
    """The business's identity token (JWT) is not acceptable: answer 401, store nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Session:
    """Who a session token speaks for."""

    visitor: Identity
    customer_id: str | None
    conversation_id: str | None
    issued_at: int
    expires_at: int
    profile_name: str | None = None
    # Identities from a sign-in that belonged to nobody, to link once the customer exists.
    pending: tuple[Identity, ...] = field(default_factory=tuple)

    @property
    def signed_in(self) -> bool:
        return self.visitor.kind is IdentityKind.EXTERNAL

    @property
    def expires_at_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SignIn:
    """What a verified identity token says about the visitor."""

    external_id: str
    email: str | None = None
    phone: str | None = None
    name: str | None = None

    @property
    def identity(self) -> Identity:
        return Identity(kind=IdentityKind.EXTERNAL, value=self.external_id)

    def claimed(self, default_region: str) -> list[Identity]:
        """The email and phone identities the token vouches for (email first)."""
        found: list[Identity] = []
        if self.email:
            found.append(email_identity(self.email))
        if self.phone:
            found.append(phone_identity(self.phone, default_region))
        return found


def new_visitor() -> Identity:
    """A fresh anonymous visitor."""
    return Identity(kind=IdentityKind.WEBCHAT, value=new_id("vis"))


# --- Session tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, signed: str) -> str:
    return _b64(hmac.new(secret.encode("utf-8"), signed.encode("ascii"), hashlib.sha256).digest())


def sign_session(session: Session, secret: str) -> str:
    if not secret:
        raise ValueError("a session secret is required")
    claims: dict[str, Any] = {
        "sub": session.visitor.key,
        "cus": session.customer_id,
        "conv": session.conversation_id,
        "iat": session.issued_at,
        "exp": session.expires_at,
    }
    if session.profile_name:
        claims["name"] = session.profile_name
    if session.pending:
        claims["link"] = [identity.key for identity in session.pending]
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signed = f"{SESSION_FORMAT}.{payload}"
    return f"{signed}.{_signature(secret, signed)}"


def new_session(
    visitor: Identity,
    *,
    now: int,
    ttl_seconds: int,
    customer_id: str | None = None,
    conversation_id: str | None = None,
    profile_name: str | None = None,
    pending: tuple[Identity, ...] = (),
) -> Session:
    return Session(
        visitor=visitor,
        customer_id=customer_id,
        conversation_id=conversation_id,
        issued_at=now,
        expires_at=now + ttl_seconds,
        profile_name=profile_name,
        pending=pending,
    )


def read_session(token: str | None, secret: str, now: int) -> Session:
    """The session a token carries; SessionRejected unless it is intact, ours and unexpired."""
    if not secret:
        raise SessionRejected("no session secret is configured")
    if not token:
        raise SessionRejected("no session token")
    if len(token) > MAX_SESSION_TOKEN_CHARS or not token.isascii():
        raise SessionRejected("malformed session token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != SESSION_FORMAT:
        raise SessionRejected("malformed session token")
    expected = _signature(secret, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected.encode("ascii"), parts[2].encode("ascii")):
        raise SessionRejected("bad session token signature")
    try:
        claims = json.loads(_unb64(parts[1]))
        return _session_from(claims, now)
    except SessionRejected:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error, InvalidIdentity):
        # Signed by us but unreadable: only a bug or a leaked secret gets here.
        raise SessionRejected("unreadable session claims") from None


def _session_from(claims: Any, now: int) -> Session:
    if not isinstance(claims, dict):
        raise ValueError("claims are not an object")
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int) or not isinstance(expires, int) or isinstance(issued, bool):
        raise ValueError("iat/exp are not integers")
    if now >= expires:
        raise SessionRejected("session token expired")
    if issued > now + CLOCK_SKEW_SECONDS:
        raise SessionRejected("session token issued in the future")
    visitor = _identity_from_key(claims["sub"])
    if visitor.kind not in VISITOR_KINDS:
        raise ValueError("not a visitor identity")
    customer_id, conversation_id = claims.get("cus"), claims.get("conv")
    if customer_id is not None and not (isinstance(customer_id, str) and is_id(customer_id, "cus")):
        raise ValueError("bad customer id")
    if conversation_id is not None and not (isinstance(conversation_id, str) and is_id(conversation_id, "conv")):
        raise ValueError("bad conversation id")
    name = claims.get("name")
    pending = tuple(_identity_from_key(key) for key in claims.get("link") or [])
    return Session(
        visitor=visitor,
        customer_id=customer_id,
        conversation_id=conversation_id,
        issued_at=issued,
        expires_at=expires,
        profile_name=name if isinstance(name, str) else None,
        pending=pending,
    )


def _identity_from_key(key: Any) -> Identity:
    if not isinstance(key, str) or "#" not in key:
        raise ValueError("not an identity key")
    kind, value = key.split("#", 1)
    if not value:
        raise ValueError("empty identity")
    return Identity(kind=IdentityKind(kind), value=value)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


# --- Identity tokens (the business's sign-in JWT) ----------------------------------------------


def verify_identity_token(token: str, secret: str, leeway: int = JWT_LEEWAY_SECONDS) -> SignIn:
    """Verify a JWT the business signed. IdentityRejected says why it is refused (never echoing it).

    Uses PyJWT (installed with the twilio library), restricted to HS256: the header is checked
    before decoding, and `algorithms=["HS256"]` makes PyJWT refuse `none` and every other one.
    """
    import jwt

    if not secret:
        raise IdentityRejected("no identity secret is configured")
    if not isinstance(token, str) or not token or len(token) > MAX_IDENTITY_TOKEN_CHARS or not token.isascii():
        raise IdentityRejected("malformed identity token")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise IdentityRejected("malformed identity token") from None
    if header.get("alg") != JWT_ALGORITHM:
        raise IdentityRejected(f"identity token algorithm must be {JWT_ALGORITHM}")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            leeway=leeway,
            options={"require": ["exp", "sub"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise IdentityRejected("identity token expired") from None
    except jwt.ImmatureSignatureError:
        raise IdentityRejected("identity token not yet valid") from None
    except jwt.InvalidSignatureError:
        raise IdentityRejected("bad identity token signature") from None
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise IdentityRejected(f"invalid identity token ({type(exc).__name__})") from None
    return _sign_in_from(claims)


def _sign_in_from(claims: dict[str, Any]) -> SignIn:
    external_id = _clean_text(claims.get("sub"), MAX_EXTERNAL_ID_CHARS)
    if not external_id:
        raise IdentityRejected(f"identity token 'sub' must be a customer id of 1 to {MAX_EXTERNAL_ID_CHARS} characters")
    email, phone, name = claims.get("email"), claims.get("phone"), claims.get("name")
    for claim, value in (("email", email), ("phone", phone), ("name", name)):
        if value is not None and not isinstance(value, str):
            raise IdentityRejected(f"identity token '{claim}' must be a string")
    return SignIn(
        external_id=external_id,
        email=email or None,
        phone=phone or None,
        name=_clean_text(name, MAX_NAME_CHARS) or None,
    )


def _clean_text(value: Any, limit: int) -> str:
    """One line of printable text, or '' when the value is not that."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if not text or len(text) > limit:
        return ""
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text):
        return ""
    return text


# --- Messages ----------------------------------------------------------------------------------


def provider_message_id(visitor: Identity, client_id: str | None) -> str:
    """The dedupe id of a visitor's message. A client id is scoped to its visitor, so one visitor
    can never collide with (or learn about) another's message by choosing the same client id."""
    if client_id is None:
        return new_id("wcm")
    if not CLIENT_ID.fullmatch(client_id):
        raise ValueError("client_id must be 1 to 64 letters, digits, '.', '_' or '-'")
    return f"{visitor.key}:{client_id}"


def inbound_message(session: Session, body: str, client_id: str | None, received_at: datetime) -> InboundMessage:
    """The InboundMessage a visitor's message becomes, for ingest like any channel's."""
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=provider_message_id(session.visitor, client_id),
        channel=Channel.WEBCHAT,
        sender=session.visitor,
        sender_address=session.visitor.value,
        recipient_address=RECIPIENT,
        body=body,
        profile_name=session.profile_name,
        received_at=received_at,
    )


def visible_to_visitor(message: Message) -> bool:
    """Customers see what they sent and what was sent to them, not the thread's internal notes."""
    return message.direction in VISIBLE_DIRECTIONS


def visitor_view(message: Message) -> dict[str, Any]:
    """A message as the visitor's page sees it: never provider ids, addresses, agents or errors."""
    created = message.created_at if message.created_at else id_datetime(message.id)
    return {
        "id": message.id,
        "direction": message.direction.value,
        "channel": message.channel.value,
        "body": message.body,
        "created_at": created.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "media": [
            {"url": media.url, "content_type": media.content_type, "filename": media.filename}
            for media in message.media
            if media.url or media.filename
        ],
        # Buttons the page shows under the message (a survey's ratings); a tap sends the label.
        "choices": [choice["label"] for choice in message.choices if choice.get("label")][:10],
    }


# --- Sending (the channel contract, channels/registry.py) ---------------------------------------


def missing_settings(channel: str) -> list[str]:
    return []  # the hub's own channel: nothing leaves the hub


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """No provider: storing the message is sending it (the visitor's page polls the thread). It is
    "sent" until a poll hands it to the page, which makes it "delivered" (services/webchat.py)."""
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=None,
        status=DeliveryStatus.SENT,
        sender_address=None,
        recipient_address=outgoing.recipient,
    )
