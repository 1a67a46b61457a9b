"""Consent as state: opt-out and opt-in keywords on SMS and WhatsApp, one-click email unsubscribe.

`handle_keyword` is called by routing for every stored inbound message (services/routing.py,
handle_inbound). For an ordinary message it costs nothing (a string check) and answers False. For
a keyword it records the change on the customer (`opted_out[channel]` = when, or the key removed),
tells the CRM (`customer.updated`), answers the customer with a confirmation (sent through the one
outbound path like an agent reply, stored in the thread, announced as `message.created`)
and answers True: the message is kept in the thread but never routed to an agent.

Twilio itself answers STOP/START/HELP on long codes and toll-free numbers (and, with Advanced
Opt-Out on a Messaging Service, with your own texts) and refuses later sends to an opted-out
number with error 21610. The hub's own confirmation would then be a second answer (or be refused):
set `CONSENT_SEND_CONFIRMATIONS=false`, or `=whatsapp` to confirm only where Twilio does not.

Redelivery is safe: the opt-out time is the inbound message's own time, the CRM events have fixed
ids, and the confirmation is sent at most once per inbound message (a marker claimed before the
send; released when Twilio could not be reached, so the retry sends it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chalicelib.api.models import customer_view
from chalicelib.channels import unsubscribe
from chalicelib.config import secret, settings
from chalicelib.domain.consent import KEYWORD_CHANNELS, KeywordAction, match_keyword
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.messages import Channel, Direction, Message, utcnow
from chalicelib.domain.outbound import OutboundMessage, Purpose
from chalicelib.domain.replies import ProviderUnavailable, Refused
from chalicelib.observability import logger
from chalicelib.services import events, outbound
from chalicelib.services.errors import NotFound, Unavailable
from chalicelib.store import customers as customer_store
from chalicelib.store import notifications as store

CONFIRMATION_PURPOSE = "consent-reply"
CHANGE_ATTEMPTS = 5

# --- Settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentSettings:
    business_name: str
    stop_text: str
    start_text: str
    help_text: str
    confirm_channels: frozenset[Channel]
    unsubscribe_secret: str

    def text_for(self, action: KeywordAction) -> str:
        chosen = {
            KeywordAction.OPT_OUT: self.stop_text,
            KeywordAction.OPT_IN: self.start_text,
            KeywordAction.HELP: self.help_text,
        }[action]
        return chosen.replace("{business_name}", self.business_name)


def parse_confirm_channels(raw: str) -> frozenset[Channel]:
    """`CONSENT_SEND_CONFIRMATIONS`: true (default) / false, or the channels to confirm on."""
    text = raw.strip().lower()
    if text in ("", "true", "1", "yes", "on", "all"):
        return frozenset(KEYWORD_CHANNELS)
    if text in ("false", "0", "no", "off", "none"):
        return frozenset()
    names = {part.strip() for part in text.split(",") if part.strip()}
    return frozenset(channel for channel in KEYWORD_CHANNELS if channel.value in names)


def consent_settings() -> ConsentSettings:
    config = settings()
    return ConsentSettings(
        business_name=config.display_name,
        stop_text=config.consent_stop_text,
        start_text=config.consent_start_text,
        help_text=config.consent_help_text,
        confirm_channels=parse_confirm_channels(config.consent_send_confirmations),
        unsubscribe_secret=secret("unsubscribe_secret"),
    )


# --- Keywords --------------------------------------------------------------------------------------


def may_be_keyword(customer: Customer, message: Message) -> bool:
    """Whether `handle_keyword` could act on this message (nothing read): most messages are not
    keywords, and routing then skips flushing its events early."""
    if message.direction is not Direction.INBOUND:
        return False
    if message.channel is Channel.EMAIL:
        return unsubscribe.subject_token(message.subject) is not None
    if message.channel not in KEYWORD_CHANNELS:
        return False
    return match_keyword(message.body, opted_out=message.channel.value in customer.opted_out) is not None


def handle_keyword(
    customer: Customer, conversation: Conversation, message: Message, *, now: datetime | None = None
) -> bool:
    """True when `message` was a consent keyword and has been handled (do not route it)."""
    if message.direction is not Direction.INBOUND:
        return False
    if message.channel is Channel.EMAIL:
        return _email_unsubscribe(customer, message)
    if message.channel not in KEYWORD_CHANNELS:
        return False
    match = match_keyword(message.body, opted_out=message.channel.value in customer.opted_out)
    if match is None:
        return False
    now = now or utcnow()
    config = consent_settings()
    logger.info(
        "consent keyword",
        extra={"message_id": message.id, "channel": message.channel.value, "action": match.action.value},
    )
    if match.action is KeywordAction.OPT_OUT:
        customer = set_consent(customer.id, message.channel, opted_out=True, at=message.created_at)
    elif match.action is KeywordAction.OPT_IN:
        customer = set_consent(customer.id, message.channel, opted_out=False, at=message.created_at)
    if message.channel in config.confirm_channels:
        _confirm(customer, conversation, message, config.text_for(match.action), now)
    return True


def _email_unsubscribe(customer: Customer, message: Message) -> bool:
    """An email to the List-Unsubscribe mailto: (subject `unsubscribe <token>`) for this customer."""
    token = unsubscribe.subject_token(message.subject)
    if token is None:
        return False
    try:
        named = unsubscribe.read_token(token, consent_settings().unsubscribe_secret)
    except unsubscribe.InvalidToken:
        return False
    if named.customer_id != customer.id or named.channel != Channel.EMAIL.value:
        return False
    set_consent(customer.id, Channel.EMAIL, opted_out=True, at=message.created_at)
    return True


def set_consent(customer_id: str, channel: Channel, *, opted_out: bool, at: datetime) -> Customer:
    """Opt the customer out of `channel` (recording `at`; an earlier opt-out keeps its time) or
    back in, and tell the CRM (`customer.updated`, keyed by the profile version, so a repeat is
    the same event)."""
    for _ in range(CHANGE_ATTEMPTS):
        before = customer_store.get_customer(customer_id)
        if before is None:
            raise NotFound(f"no customer '{customer_id}'")
        wanted = dict(before.opted_out)
        if opted_out:
            wanted.setdefault(channel.value, at)
        else:
            wanted.pop(channel.value, None)
        if wanted == before.opted_out:
            after = before
        else:
            try:
                after = store.set_opted_out(before, wanted, at)
            except store.ChangedMeanwhile:
                continue
        _announce_customer(after)
        return after
    raise Unavailable("the customer is being changed by other requests; retry")


def _announce_customer(customer: Customer) -> None:
    events.emit_many(
        [("customer.updated", {"customer": customer_view(customer)}, f"{customer.id}:v{customer.version}")]
    )


def _confirm(customer: Customer, conversation: Conversation, inbound: Message, text: str, now: datetime) -> None:
    """Answer the keyword on the channel it came on, from the number it was sent to, at most once
    per inbound message (through the one outbound path; an opt-out's own answer is its only
    exception to consent)."""
    if not store.claim_once(CONFIRMATION_PURPOSE, inbound.id, now):
        return  # confirmed by an earlier delivery of this message
    answer = OutboundMessage(purpose=Purpose.CONSENT_ANSWER, text=text, channel=inbound.channel)
    try:
        delivered = outbound.send(answer, customer, conversation, now=now)
    except Refused as refused:
        store.release_once(CONFIRMATION_PURPOSE, inbound.id)
        logger.warning("consent confirmation not sent", extra={"code": refused.code, "reason": refused.message})
        return
    except ProviderUnavailable as exc:
        store.release_once(CONFIRMATION_PURPOSE, inbound.id)
        raise Unavailable(f"the consent confirmation could not be sent ({exc.reason}); retry") from exc
    if delivered.rejected:
        # Twilio refuses (21610) once its own STOP filtering has blocked the number.
        logger.warning(
            "consent confirmation refused",
            extra={"error_code": delivered.message.error_code, "message_id": delivered.message.id},
        )


# --- Email unsubscribe ----------------------------------------------------------------------------------


class UnsubscribeState(StrEnum):
    INVALID = "invalid"  # the token was not made by this hub (or names no customer)
    ASK = "ask"  # valid, the customer is subscribed: ask before changing anything
    DONE = "done"  # unsubscribed (now or earlier)


def unsubscribe_by_token(token: str, confirm: bool, *, now: datetime | None = None) -> UnsubscribeState:
    """The one-click unsubscribe link (`/unsubscribe/email/{token}`): `confirm` (a POST: the page's
    button, or a mail client's RFC 8058 one-click POST) unsubscribes; otherwise (a GET, which link
    scanners prefetch) nothing changes. Public: the token is the credential."""
    try:
        named = unsubscribe.read_token(token, secret("unsubscribe_secret"))
    except unsubscribe.InvalidToken:
        return UnsubscribeState.INVALID
    customer = customer_store.get_customer(named.customer_id)
    if customer is None or named.channel != Channel.EMAIL.value:
        return UnsubscribeState.INVALID
    if confirm:
        set_consent(customer.id, Channel.EMAIL, opted_out=True, at=now or utcnow())
        logger.info("email unsubscribe", extra={"customer_id": customer.id})
        return UnsubscribeState.DONE
    return UnsubscribeState.DONE if Channel.EMAIL.value in customer.opted_out else UnsubscribeState.ASK
