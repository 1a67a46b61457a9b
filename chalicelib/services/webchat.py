"""Web chat use cases: start or resume a visitor's session, take their messages, long-poll the
thread for them, and tell whether they are still connected.

A visitor writes into the same one thread as every other channel: a message is an
InboundMessage (provider "webchat") handed to `services.ingest`, so it is deduplicated, stored
and routed exactly like an SMS. The customer is created by ingest on the visitor's first
message, not when the session starts: opening the chat stores nothing, so drive-by visitors
never become empty customers, and the first-message transaction (conditioned on the identity)
keeps two racing first messages on one customer. A session whose visitor the hub already knows
(a signed-in customer, a resumed session, a redeemed link) carries the customer and
conversation ids from the start.

The identity item (`IDENT#webchat#vis_...` or `IDENT#external#<id>`) is the source of truth for
which thread a visitor may read: every request resolves it once (one GetItem), so a token's ids
are a hint, and moving or deleting the identity revokes access at once.

Agent replies on web chat are stored by services.replies with status "sent" (nothing leaves the
hub); the first poll that hands a reply to the visitor's page moves it to "delivered" and tells
the CRM (`message.status_updated`), as a provider's callback does for SMS.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.channels import webchat as channel
from chalicelib.channels.webchat import IdentityRejected, Session, SessionRejected
from chalicelib.config import secret, settings
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import is_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Message, StatusUpdate, utcnow
from chalicelib.observability import logger
from chalicelib.services.errors import InvalidRequest, Unavailable
from chalicelib.store import presence, thread

__all__ = ["IdentityRejected", "SessionRejected", "is_connected"]

MAX_WAIT_SECONDS = 25.0
PAGE_SIZE = 100
FAST_POLL_SECONDS = 0.5  # for the first few seconds of a wait, when a reply is most likely
SLOW_POLL_SECONDS = 1.0
FAST_POLL_FOR_SECONDS = 5.0
TIME_MARGIN_SECONDS = 2.0  # answer this long before the Lambda's own deadline
LAST_SEEN_EVERY_SECONDS = 10.0
DEFAULT_CONNECTED_WITHIN_SECONDS = 30.0


# --- Settings (chalicelib.config, read on every request so a changed environment applies at once) --


class NotConfigured(Unavailable):
    """Web chat (or its sign-in) is not configured on this hub."""


def _session_secret() -> str:
    value = secret("webchat_session_secret")
    if not value:
        logger.error("WEBCHAT_SESSION_SECRET is not configured; web chat is off")
        raise NotConfigured("web chat is not configured on this hub")
    return value


def _session_ttl() -> int:
    return settings().webchat_session_ttl_seconds


# --- Requests ------------------------------------------------------------------------------------


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(default=None, max_length=channel.MAX_SESSION_TOKEN_CHARS)
    identity: str | None = Field(default=None, max_length=channel.MAX_IDENTITY_TOKEN_CHARS)
    link: str | None = Field(default=None, max_length=2048)


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=channel.MAX_BODY_CHARS)
    client_id: str | None = Field(default=None, max_length=64)

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not channel.CLIENT_ID.fullmatch(value):
            raise ValueError("client_id must be 1 to 64 letters, digits, '.', '_' or '-'")
        return value


def _validated(model: type[BaseModel], payload: Any) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        from chalicelib.api.reply_models import validation_problem

        raise InvalidRequest(validation_problem(exc)) from None


# --- Sessions ------------------------------------------------------------------------------------


def _epoch(now: datetime) -> int:
    return int(now.timestamp())


def authenticate(token: str | None, now: datetime | None = None) -> Session:
    """The session a bearer token speaks for; SessionRejected (401) otherwise."""
    return channel.read_session(token, _session_secret(), _epoch(now or utcnow()))


def start_session(payload: Any, now: datetime | None = None) -> dict[str, Any]:
    """`POST /webchat/sessions`: a new anonymous visitor, a resumed session, or a signed-in one;
    with `link`, a handoff link binds the visitor to the invited customer's thread.

    Every token given is checked before anything is written: a bad one is a 401 (a bad link a
    400), and nothing is stored."""
    now = now or utcnow()
    session_secret = _session_secret()
    request: SessionRequest = _validated(SessionRequest, payload)
    previous = channel.read_session(request.token, session_secret, _epoch(now)) if request.token is not None else None
    sign_in, claimed = None, []
    if request.identity is not None:
        jwt_secret = secret("webchat_jwt_secret")
        if not jwt_secret:
            raise NotConfigured("web chat sign-in is not configured on this hub")
        sign_in = channel.verify_identity_token(request.identity, jwt_secret)
        claimed = sign_in.claimed(settings().default_phone_region)
    if sign_in is not None:
        visitor, name = sign_in.identity, sign_in.name
    elif previous is not None:
        visitor, name = previous.visitor, previous.profile_name
    else:
        visitor, name = channel.new_visitor(), None
    if request.link is not None:
        _redeem_link(request.link, visitor)  # refused (400) before anything else is written
    if sign_in is not None:
        session = _signed_in(visitor, claimed, name, now)
    elif previous is not None or request.link is not None:
        session = _resumed(previous or channel.new_session(visitor, now=_epoch(now), ttl_seconds=60), now)
    else:
        session = channel.new_session(visitor, now=_epoch(now), ttl_seconds=_session_ttl())
    logger.info(
        "web chat session",
        extra={
            "mode": "signed_in" if sign_in else "resumed" if previous else "anonymous",
            "customer_id": session.customer_id,
            "linked": request.link is not None,
        },
    )
    return _session_answer(session, session_secret)


def _session_answer(session: Session, session_secret: str) -> dict[str, Any]:
    return {
        "session": channel.sign_session(session, session_secret),
        "customer_id": session.customer_id,
        "conversation_id": session.conversation_id,
        "expires_at": session.expires_at_iso,
    }


def _renewed(session: Session, now: datetime, ref: thread.ThreadRef | None) -> Session:
    return channel.new_session(
        session.visitor,
        now=_epoch(now),
        ttl_seconds=_session_ttl(),
        customer_id=ref.customer_id if ref else None,
        conversation_id=ref.conversation_id if ref else None,
        profile_name=session.profile_name,
        pending=session.pending if ref is None else (),
    )


def _resumed(previous: Session, now: datetime) -> Session:
    ref = thread.find_identity(previous.visitor)
    if ref is not None and previous.pending:
        _link_identities(ref.customer_id, list(previous.pending))
    return _renewed(previous, now, ref)


def _signed_in(visitor: Identity, claimed: list[Identity], name: str | None, now: datetime) -> Session:
    """The business vouches for who the visitor is: join that customer's thread if the hub knows
    them by their id, email or phone; link what the token vouches for and belongs to nobody."""
    ref = thread.find_identity(visitor)
    owners = {identity: thread.find_identity(identity) for identity in claimed}
    unowned = [identity for identity, owner in owners.items() if owner is None]
    if ref is None:
        # Known by email or phone (email first): the web chat joins that customer's thread.
        ref = next((owner for owner in owners.values() if owner is not None), None)
        if ref is not None:
            ref = _link_identities(ref.customer_id, [visitor, *unowned], claim=visitor) or ref
    elif unowned:
        _link_identities(ref.customer_id, unowned)
    return channel.new_session(
        visitor,
        now=_epoch(now),
        ttl_seconds=_session_ttl(),
        customer_id=ref.customer_id if ref else None,
        conversation_id=ref.conversation_id if ref else None,
        profile_name=name,
        pending=tuple(unowned) if ref is None else (),
    )


def _link_identities(
    customer_id: str, identities: list[Identity], claim: Identity | None = None
) -> thread.ThreadRef | None:
    """Link identities to a customer, skipping any that belong to someone else by then.

    If `claim` (the visitor's own identity) was taken by another customer meanwhile (a racing
    session start), that customer's thread is returned: the visitor joins it."""
    from chalicelib.services.customers import get_customer
    from chalicelib.store import customers as customer_store

    wanted = list(identities)
    for _ in range(5):
        before = get_customer(customer_id)
        linking = [identity for identity in wanted if identity not in before.identities]
        if not linking:
            return None
        after = before.model_copy(
            update={
                "identities": [*before.identities, *linking],
                "email": before.email or next((i.value for i in linking if i.kind == "email"), None),
                "phone": before.phone or next((i.value for i in linking if i.kind == "phone"), None),
                "updated_at": max(utcnow(), before.updated_at),
                "version": before.version + 1,
            }
        )
        try:
            saved = customer_store.save_profile(before, after, linking, {})
        except customer_store.IdentityBelongsToAnother as exc:
            if claim is not None and exc.identity == claim:
                return thread.find_identity(claim)
            wanted = [identity for identity in wanted if identity != exc.identity]
            continue
        except customer_store.ChangedMeanwhile:
            continue
        _announce_customer(saved)
        return None
    raise Unavailable("the customer is being changed by other requests; retry")


def _announce_customer(customer: Any) -> None:
    from chalicelib.api.models import customer_view
    from chalicelib.services import events

    try:
        events.emit("customer.updated", {"customer": customer_view(customer)}, f"{customer.id}:v{customer.version}")
    except Exception as exc:  # the link is stored; the CRM hears of it with the next change
        logger.warning("customer.updated not queued", extra={"customer_id": customer.id, "error": type(exc).__name__})


def _redeem_link(token: str, visitor: Identity) -> None:
    """A handoff link (`/webchat?link=...`) binds this visitor to the customer who was invited."""
    from chalicelib.services import link_redemption

    link_redemption.redeem_token(token, visitor)


# --- Messages ------------------------------------------------------------------------------------


def post_message(token: str | None, payload: Any, now: datetime | None = None) -> dict[str, Any]:
    """`POST /webchat/messages`: the visitor writes; the message joins the thread and goes to routing.

    A repeat with the same `client_id` stores nothing new and answers 200 with the first message."""
    from chalicelib.services.ingest import ingest

    now = now or utcnow()
    session_secret = _session_secret()
    session = channel.read_session(token, session_secret, _epoch(now))
    request: MessageRequest = _validated(MessageRequest, payload)
    result = ingest(channel.inbound_message(session, request.body, request.client_id, now))
    if session.pending:
        _link_identities(result.customer_id, list(session.pending))
    touch(result.conversation_id, now)  # a visitor who just wrote is on the page
    message = thread.get_message(result.conversation_id, result.message_id) if result.duplicate else None
    view = (
        channel.visitor_view(message)
        if message is not None
        else {
            "id": result.message_id,
            "direction": Direction.INBOUND.value,
            "channel": Channel.WEBCHAT.value,
            "body": request.body,
            "created_at": _iso(_message_time(result.message_id)),
            "media": [],
        }
    )
    renewed = _renewed(session, now, thread.ThreadRef(result.customer_id, result.conversation_id))
    body: dict[str, Any] = {"message": view, "duplicate": result.duplicate, **_session_answer(renewed, session_secret)}
    notice = getattr(result, "notice", None)
    if notice:
        body["notice"] = notice
    return body


def _message_time(message_id: str) -> datetime:
    from chalicelib.domain.ids import id_datetime

    return id_datetime(message_id)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def poll_messages(
    token: str | None,
    after: str | None,
    wait_seconds: float,
    *,
    time_left: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`GET /webchat/messages`: the visitor's thread after `after`, oldest first, all channels.

    With nothing new, waits up to `wait_seconds` (at most 25, and never past the Lambda's time
    left), reading the thread every 0.5 s for the first 5 s and every second after: a bounded
    number of keyed Queries, no Scan."""
    now = now or utcnow()
    session_secret = _session_secret()
    session = channel.read_session(token, session_secret, _epoch(now))
    if after is not None and not is_id(after, "msg"):
        raise InvalidRequest("'after' must be a message id this API returned")
    if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
        raise InvalidRequest(f"'wait' must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")
    ref = thread.find_identity(session.visitor)
    answer: dict[str, Any] = {}
    half_life = _session_ttl() // 2
    if ref is None or ref.conversation_id != session.conversation_id or session.expires_at - _epoch(now) < half_life:
        # The visitor's thread changed (first message, a link), or the token is past half its life.
        answer.update(_session_answer(_renewed(session, now, ref), session_secret))
    if ref is None:
        # Nobody can write to a visitor who has not written yet: nothing to wait for.
        return {"data": [], "next_after": after, "more": False, **answer}
    budget = wait_seconds if time_left is None else max(0.0, min(wait_seconds, time_left - TIME_MARGIN_SECONDS))
    started = time.monotonic()
    cursor = after
    while True:
        touch(ref.conversation_id)
        messages, more = thread.list_messages(ref.conversation_id, PAGE_SIZE, cursor)
        if messages:
            cursor = messages[-1].id
        visible = [message for message in messages if channel.visible_to_visitor(message)]
        waited = time.monotonic() - started
        if visible or more or waited >= budget:
            _mark_delivered(visible)
            return {
                "data": [channel.visitor_view(message) for message in visible],
                "next_after": cursor,
                "more": more,
                **answer,
            }
        if messages:
            continue  # only internal notes: look again at once from past them
        interval = FAST_POLL_SECONDS if waited < FAST_POLL_FOR_SECONDS else SLOW_POLL_SECONDS
        time.sleep(min(interval, max(0.0, budget - waited)))


def _mark_delivered(messages: list[Message]) -> None:
    """Agent replies on web chat are "sent" when stored and "delivered" once the page has them."""
    pending = [
        m
        for m in messages
        if m.direction is Direction.OUTBOUND and m.channel is Channel.WEBCHAT and m.status is DeliveryStatus.SENT
    ]
    if not pending:
        return
    from chalicelib.services import events
    from chalicelib.services.delivery_status import status_event

    changed = []
    try:
        for message in pending:
            stored = thread.StoredProviderMessage(
                message_id=message.id,
                conversation_id=message.conversation_id,
                customer_id=message.customer_id,
                direction=message.direction.value,
                channel=message.channel.value,
            )
            update = StatusUpdate(
                provider=channel.PROVIDER, provider_message_id=message.id, status=DeliveryStatus.DELIVERED
            )
            applied = thread.apply_status(stored, update)
            if applied is not None:
                changed.append(applied)
        if changed:
            events.emit_many([status_event(message) for message in changed])
    except Exception as exc:  # the visitor has the message either way; the status is a courtesy
        logger.warning("web chat delivery status not recorded", extra={"error": type(exc).__name__})


# --- Presence ------------------------------------------------------------------------------------

_touched: dict[str, float] = {}
_touched_lock = threading.Lock()


def touch(conversation_id: str, now: datetime | None = None) -> None:
    """Record that the visitor's page is polling: at most one write per conversation every ~10 s
    (an in-process memo skips the write; a condition on the item keeps other processes to it)."""
    clock = time.monotonic()
    with _touched_lock:
        if clock - _touched.get(conversation_id, float("-inf")) < LAST_SEEN_EVERY_SECONDS:
            return
        if len(_touched) > 10_000:
            _touched.clear()
        _touched[conversation_id] = clock
    now = now or utcnow()
    try:
        presence.record_last_seen(conversation_id, now, now - timedelta(seconds=LAST_SEEN_EVERY_SECONDS))
    except Exception as exc:  # presence is best effort: never fail the visitor's poll for it
        logger.warning("web chat last-seen not recorded", extra={"error": type(exc).__name__})


def last_seen(conversation_id: str) -> datetime | None:
    """When the visitor's page last polled the conversation, if ever."""
    if not is_id(conversation_id, "conv"):
        return None
    return presence.read_last_seen(conversation_id)


def is_connected(
    conversation_id: str, within_seconds: float = DEFAULT_CONNECTED_WITHIN_SECONDS, now: datetime | None = None
) -> bool:
    """True when the visitor's web chat page polled this conversation within `within_seconds`.

    An open page keeps a long poll going and records itself at most every ~10 s (and a poll lasts
    up to 25 s), so `within_seconds` below ~30 can miss a visitor who is there."""
    seen = last_seen(conversation_id)
    if seen is None:
        return False
    return ((now or utcnow()) - seen).total_seconds() <= within_seconds
