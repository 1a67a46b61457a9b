"""Consent as state: opt-out and opt-in keywords on SMS and WhatsApp, one-click email unsubscribe.

`handle_keyword` is called by routing for every stored inbound message (services/routing.py,
handle_inbound). For an ordinary message it costs nothing (a string check) and answers False. For
a keyword it records the change on the customer (`opted_out[channel]` = when, or the key removed),
tells the CRM (`customer.updated`), answers the customer with a confirmation (sent through Twilio
like an agent reply, stored in the thread as an outbound message, announced as `message.created`)
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

import html
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.channels import unsubscribe
from chalicelib.domain.consent import KEYWORD_CHANNELS, KeywordAction, match_keyword
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.ids import id_datetime, new_id
from chalicelib.domain.messages import Channel, DeliveryStatus, Direction, Message, utcnow
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, recipient_for, whatsapp_address
from chalicelib.observability import logger
from chalicelib.services.errors import Unavailable
from chalicelib.store import customers as customer_store
from chalicelib.store import notifications as store
from chalicelib.store import thread

CONFIRMATION_PURPOSE = "consent-reply"
CHANGE_ATTEMPTS = 5

DEFAULT_STOP_TEXT = (
    "{business_name}: you are unsubscribed and will get no more messages here. Reply START to resubscribe."
)
DEFAULT_START_TEXT = "{business_name}: you are subscribed again. Reply STOP to unsubscribe, HELP for help."
DEFAULT_HELP_TEXT = (
    "{business_name}: reply here with your question and our team will answer. "
    "Reply STOP to unsubscribe, START to resubscribe."
)


# --- Settings (to move into chalicelib/config.py) ------------------------------------------------


@dataclass(frozen=True)
class ConsentSettings:
    business_name: str = "omnihub"
    stop_text: str = DEFAULT_STOP_TEXT
    start_text: str = DEFAULT_START_TEXT
    help_text: str = DEFAULT_HELP_TEXT
    confirm_channels: frozenset[Channel] = frozenset(KEYWORD_CHANNELS)
    unsubscribe_secret: str = ""
    unsubscribe_mailto: str = ""  # an address the hub reads (Inbound Parse), or "" for none
    public_base_url: str = "http://127.0.0.1:8000"

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
    """Read on every use (cheap), so a changed environment applies at once."""
    from chalicelib.config import secret, settings

    def env(name: str, default: str = "") -> str:
        return os.environ.get(name, "").strip() or default

    mailto = env("UNSUBSCRIBE_MAILTO", env("SENDGRID_FROM_EMAIL"))
    return ConsentSettings(
        business_name=env("BUSINESS_NAME", env("SENDGRID_FROM_NAME", "omnihub")),
        stop_text=env("CONSENT_STOP_TEXT", DEFAULT_STOP_TEXT),
        start_text=env("CONSENT_START_TEXT", DEFAULT_START_TEXT),
        help_text=env("CONSENT_HELP_TEXT", DEFAULT_HELP_TEXT),
        confirm_channels=parse_confirm_channels(env("CONSENT_SEND_CONFIRMATIONS", "true")),
        unsubscribe_secret=secret("unsubscribe_secret"),
        unsubscribe_mailto="" if mailto.lower() in ("off", "none", "false") else mailto,
        public_base_url=settings().public_base_url,
    )


# --- Keywords --------------------------------------------------------------------------------------


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
            from chalicelib.services.errors import NotFound

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
    from chalicelib.api.models import customer_view
    from chalicelib.services import events

    events.emit_many(
        [("customer.updated", {"customer": customer_view(customer)}, f"{customer.id}:v{customer.version}")]
    )


def _confirm(customer: Customer, conversation: Conversation, inbound: Message, text: str, now: datetime) -> None:
    from chalicelib.channels import registry
    from chalicelib.services.replies import reply_settings

    config = reply_settings()
    provider = inbound.provider or "twilio"
    missing = config.missing_for(inbound.channel, provider)
    if missing:
        logger.warning("consent confirmation not sent: set " + ", ".join(missing))
        return
    if not store.claim_once(CONFIRMATION_PURPOSE, inbound.id, now):
        return  # confirmed by an earlier delivery of this message
    recipient = recipient_for(inbound.channel, customer)
    message_id = new_id("msg")
    try:
        if registry.has_sender(provider):  # WhatsApp through Meta's Cloud API: answered through it
            sent = _send_chat_app_confirmation(provider, inbound, recipient, text, message_id, config)
        else:
            sent = _send_twilio_confirmation(inbound, recipient, text, config)
    except ProviderUnavailable as exc:
        store.release_once(CONFIRMATION_PURPOSE, inbound.id)
        raise Unavailable(f"the consent confirmation could not be sent ({exc.reason}); retry") from exc
    except ProviderRejected as exc:
        # Twilio refuses (21610) once its own STOP filtering has blocked the number.
        logger.warning("consent confirmation refused", extra={"error_code": exc.code, "message_id": message_id})
        message = _confirmation(message_id, customer, inbound, text, recipient, DeliveryStatus.FAILED)
        message = message.model_copy(
            update={"error_code": exc.code, "error_message": exc.message, "status_updated_at": message.created_at}
        )
        from chalicelib.store import idempotency

        idempotency.record_outbound_without_provider_id(message)
    else:
        message = _confirmation(message_id, customer, inbound, text, recipient, sent.status).model_copy(
            update={"provider_message_id": sent.provider_message_id, "sender_address": sent.sender_address}
        )
        thread.record_outbound(message)
    _announce_message(customer, conversation, message)
    if message.provider_message_id:
        from chalicelib.services.delivery_status import catch_up

        catch_up(provider, message.provider_message_id)  # statuses that beat the recording


def _send_twilio_confirmation(inbound: Message, recipient: str, text: str, config: Any) -> Any:
    from chalicelib.channels import twilio

    service = config.twilio_messaging_service_sid
    return twilio.send_message(
        account_sid=config.twilio_account_sid,
        auth_token=config.twilio_auth_token,
        to=recipient,
        body=text,
        from_=None if service else _sender(inbound, config),
        messaging_service_sid=service or None,
        status_callback=config.status_callback_url,
        api_base_url=config.twilio_api_base_url,
        timeout=config.provider_timeout_seconds,
    )


def _send_chat_app_confirmation(
    provider: str, inbound: Message, recipient: str, text: str, message_id: str, config: Any
) -> Any:
    from chalicelib.channels import registry
    from chalicelib.channels.base import Outgoing

    if inbound.channel is Channel.WHATSAPP:
        # The number in Meta's form even if a later message came through Twilio meanwhile.
        recipient = recipient.removeprefix("whatsapp:")
    outgoing = Outgoing(
        channel=inbound.channel.value,
        recipient=recipient,
        body=text,
        hub_message_id=message_id,
        timeout=config.provider_timeout_seconds,
    )
    return registry.sender(provider).send(outgoing)


def _sender(inbound: Message, config: Any) -> str:
    """The number the customer wrote to (a STOP is answered from it), else the configured sender."""
    written_to = (inbound.recipient_address or "").strip()
    if written_to:
        bare = written_to.split(":", 1)[-1].strip()
        return whatsapp_address(bare) if inbound.channel is Channel.WHATSAPP else bare
    if inbound.channel is Channel.WHATSAPP:
        return whatsapp_address(config.twilio_whatsapp_from)
    return str(config.twilio_sms_from)


def _confirmation(
    message_id: str, customer: Customer, inbound: Message, text: str, recipient: str, status: DeliveryStatus
) -> Message:
    return Message(
        id=message_id,
        conversation_id=inbound.conversation_id,
        customer_id=customer.id,
        channel=inbound.channel,
        direction=Direction.OUTBOUND,
        body=text,
        status=status,
        created_at=id_datetime(message_id),
        provider=inbound.provider or "twilio",
        recipient_address=recipient,
    )


def _announce_message(customer: Customer, conversation: Conversation, message: Message) -> None:
    from chalicelib.api.models import conversation_view, customer_view, message_view
    from chalicelib.services import events

    current = thread.get_conversation(conversation.id) or conversation
    data = {
        "customer": customer_view(customer),
        "conversation": conversation_view(current),
        "message": message_view(message),
    }
    events.emit_many([("message.created", data, message.id)])


# --- Email unsubscribe ----------------------------------------------------------------------------------


class UnsubscribeNotConfigured(ValueError):
    """UNSUBSCRIBE_SECRET is not set: no unsubscribe link can be made."""


def unsubscribe_link(customer_id: str) -> str:
    config = consent_settings()
    if not config.unsubscribe_secret:
        raise UnsubscribeNotConfigured("set UNSUBSCRIBE_SECRET to send email with an unsubscribe link")
    token = unsubscribe.make_token(customer_id, Channel.EMAIL.value, config.unsubscribe_secret)
    return unsubscribe.unsubscribe_url(config.public_base_url, token)


def unsubscribe_headers(customer_id: str) -> dict[str, str]:
    """`List-Unsubscribe` (https one-click URL, then a mailto:) and `List-Unsubscribe-Post` for an
    email to this customer. Raises UnsubscribeNotConfigured without UNSUBSCRIBE_SECRET."""
    config = consent_settings()
    url = unsubscribe_link(customer_id)
    token = url.rsplit("/", 1)[-1]
    mailto = unsubscribe.mailto_uri(config.unsubscribe_mailto, token) if config.unsubscribe_mailto else None
    return unsubscribe.list_unsubscribe_headers(url, mailto)


def unsubscribe_footer(customer_id: str) -> str:
    """The text that ends every email: who sends it, and the unsubscribe link."""
    return unsubscribe.email_footer(unsubscribe_link(customer_id), consent_settings().business_name)


@dataclass(frozen=True)
class UnsubscribePage:
    status_code: int
    html: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",  # the URL carries the token
            "X-Robots-Tag": "noindex",
        }


def unsubscribe_page(token: str, method: str, *, now: datetime | None = None) -> UnsubscribePage:
    """`GET /unsubscribe/email/{token}` shows a confirm button (link scanners prefetch GETs, so a
    GET changes nothing); `POST` (the button, or a mail client's RFC 8058 one-click POST of
    `List-Unsubscribe=One-Click`) unsubscribes and answers 200. Public: the token is the credential."""
    config = consent_settings()
    name = html.escape(config.business_name)
    try:
        named = unsubscribe.read_token(token, config.unsubscribe_secret)
    except unsubscribe.InvalidToken:
        return UnsubscribePage(404, _page("Link not valid", "<p>This unsubscribe link is not valid.</p>"))
    customer = customer_store.get_customer(named.customer_id)
    if customer is None or named.channel != Channel.EMAIL.value:
        return UnsubscribePage(404, _page("Link not valid", "<p>This unsubscribe link is not valid.</p>"))
    done = _page(
        "Unsubscribed",
        f"<p>You are unsubscribed: {name} will send you no more email.</p>"
        "<p>Messages by SMS or WhatsApp are not affected; reply STOP there to stop them.</p>",
    )
    if method.upper() == "POST":
        set_consent(customer.id, Channel.EMAIL, opted_out=True, at=now or utcnow())
        logger.info("email unsubscribe", extra={"customer_id": customer.id})
        return UnsubscribePage(200, done)
    if Channel.EMAIL.value in customer.opted_out:
        return UnsubscribePage(200, done)
    return UnsubscribePage(
        200,
        _page(
            "Unsubscribe",
            f"<p>Stop receiving email from {name}?</p>"
            '<form method="post" action=""><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>',
        ),
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
