"""Twilio Programmable Messaging: SMS, MMS and WhatsApp webhooks.

Inbound messages and status callbacks arrive form-encoded (JSON bodies are signed with the
`bodySHA256` query variant). Every request is checked against `X-Twilio-Signature` over the
public URL Twilio called before anything else looks at it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from chalicelib.channels.base import MalformedPayload, Outgoing, WebhookRejected, WebhookRequest
from chalicelib.domain.access_tokens import TokenCache
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.identity import InvalidIdentity, normalize_phone, phone_identity
from chalicelib.domain.messages import Channel, DeliveryStatus, InboundMessage, Media, StatusUpdate
from chalicelib.domain.replies import ProviderRejected, ProviderUnavailable, SentMessage, whatsapp_address
from chalicelib.domain.webhook_items import BatchOutcome, WebhookItem

PROVIDER = "twilio"
ACKNOWLEDGEMENT_TYPE = "text/xml"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# What Twilio takes: 1,600 characters (error 21617) and 10 media (error 21623) per message; on
# WhatsApp, free-form messages only within 24 hours of the customer's last one, templates after.
RULES = {
    Channel.SMS.value: ChannelRules(name="SMS", body_chars=1600, media=10),
    Channel.WHATSAPP.value: ChannelRules(
        name="WhatsApp", body_chars=1600, media=10, window=timedelta(hours=24), template_outside_window=True
    ),
}
SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
MAX_MEDIA = 10  # Twilio delivers at most 10 media items per message

_STATUSES: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.ACCEPTED,
    "scheduled": DeliveryStatus.SCHEDULED,
    "canceled": DeliveryStatus.CANCELED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "failed": DeliveryStatus.FAILED,
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "receiving": DeliveryStatus.RECEIVED,
    "received": DeliveryStatus.RECEIVED,
    "read": DeliveryStatus.READ,
}


class FormParams(dict[str, str]):
    """Form fields with their repeated values kept, in the shape twilio's validator reads."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._lists: dict[str, list[str]] = {}
        for key, value in pairs:
            self._lists.setdefault(key, []).append(value)
        super().__init__({key: values[0] for key, values in self._lists.items()})

    def getlist(self, key: str) -> list[str]:
        return self._lists.get(key, [])


def read_params(request: WebhookRequest) -> FormParams | str:
    """The form fields, or the raw JSON text when Twilio sent a JSON body."""
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("request body is not valid UTF-8") from None
    if request.content_type == "application/json":
        return text
    return FormParams(parse_qsl(text, keep_blank_values=True))


# --- The channel contract (channels/registry.py) ---------------------------------------------


def verify(request: WebhookRequest) -> None:
    """Check X-Twilio-Signature with the configured auth token over the public URL Twilio called."""
    from chalicelib.config import secret, settings

    verified_params(request, secret("twilio_auth_token"), settings().public_base_url)


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """An inbound message (the messaging webhook) or a delivery status (the status callback)."""
    from chalicelib.config import settings

    params = read_params(request)
    fields = _json_params(params) if isinstance(params, str) else params
    if request.path.rstrip("/").endswith(STATUS_CALLBACK_PATH):
        return [parse_status(fields)]
    return [parse_inbound(fields, settings().default_phone_region)]


def acknowledgement(outcome: BatchOutcome) -> str:
    return EMPTY_TWIML


def missing_settings(channel: str) -> list[str]:
    from chalicelib.config import secret, settings

    config = settings()
    needed = {"TWILIO_ACCOUNT_SID": config.twilio_account_sid, "TWILIO_AUTH_TOKEN": secret("twilio_auth_token")}
    missing = [name for name, value in needed.items() if not value]
    sender = config.twilio_sms_from if channel == Channel.SMS.value else config.twilio_whatsapp_from
    if not config.twilio_messaging_service_sid and not sender:
        name = "TWILIO_SMS_FROM" if channel == Channel.SMS.value else "TWILIO_WHATSAPP_FROM"
        missing.append(f"{name} (or TWILIO_MESSAGING_SERVICE_SID)")
    return missing


def send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage:
    """Send from the business number the customer wrote to, else the configured sender (or the
    Messaging Service, which then picks one); status callbacks come back to the hub."""
    from chalicelib.config import secret, settings

    config = settings()
    whatsapp = outgoing.channel == Channel.WHATSAPP.value
    service = config.twilio_messaging_service_sid
    # The number written to goes with the Messaging Service too (it is one of its senders); without
    # one, the service picks the sender, else the configured number does.
    chosen = outgoing.sender or ("" if service else config.twilio_whatsapp_from if whatsapp else config.twilio_sms_from)
    sender = (whatsapp_address(chosen) if whatsapp else chosen) if chosen else None
    return send_message(
        account_sid=config.twilio_account_sid,
        auth_token=secret("twilio_auth_token"),
        to=outgoing.recipient,
        body=outgoing.body,
        media_urls=list(outgoing.media_urls),
        from_=sender,
        messaging_service_sid=service or None,
        status_callback=config.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH,
        content_sid=outgoing.template,
        content_variables=outgoing.template_variables or None,
        api_base_url=config.twilio_api_base_url,
        timeout=outgoing.timeout,
    )


# --- Verification and parsing ----------------------------------------------------------------


def verified_params(request: WebhookRequest, auth_token: str, public_base_url: str) -> FormParams:
    """Check X-Twilio-Signature and return the verified form fields."""
    if not auth_token:
        raise WebhookRejected("TWILIO_AUTH_TOKEN is not configured")
    signature = request.header(SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected("X-Twilio-Signature header is missing")
    try:
        params = read_params(request)
    except MalformedPayload as exc:
        raise WebhookRejected(f"unverifiable body: {exc}") from None

    from twilio.request_validator import RequestValidator, get_signature_algorithm

    algorithm = get_signature_algorithm(request.header(SIGNATURE_SETTINGS_HEADER))
    url = request.public_url(public_base_url)
    if not RequestValidator(auth_token).validate(url, params, signature, algorithm):
        raise WebhookRejected("X-Twilio-Signature does not match the request")
    if isinstance(params, str):
        return _json_params(params)
    return params


def _json_params(text: str) -> FormParams:
    try:
        data = json.loads(text)
    except ValueError:
        raise MalformedPayload("JSON body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("JSON body must be an object")
    return FormParams((str(key), "" if value is None else str(value)) for key, value in data.items())


_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")


def _sid(params: FormParams) -> str:
    sid = (params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid") or "").strip()
    if not sid:
        raise MalformedPayload("'MessageSid' is required")
    if not _SID.match(sid):
        raise MalformedPayload("'MessageSid' is not a Twilio message SID")
    return sid


def _required(params: FormParams, name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise MalformedPayload(f"'{name}' is required")
    return value


def _channel_of(address: str) -> Channel:
    scheme, sep, _ = address.partition(":")
    if not sep or scheme.lower() in {"tel", "sms", "mms"} or scheme.startswith("+"):
        return Channel.SMS
    if scheme.lower() == "whatsapp":
        return Channel.WHATSAPP
    raise MalformedPayload(f"unsupported address type '{scheme}:' in 'From'")


def _media(params: FormParams) -> list[Media]:
    raw_count = params.get("NumMedia", "0").strip() or "0"
    if not raw_count.isdigit():
        raise MalformedPayload("'NumMedia' must be a whole number")
    items = []
    for index in range(min(int(raw_count), MAX_MEDIA)):
        url = params.get(f"MediaUrl{index}")
        if url:
            items.append(Media(url=url, content_type=params.get(f"MediaContentType{index}") or None))
    return items


def parse_inbound(params: FormParams, default_region: str = "US") -> InboundMessage:
    """An inbound SMS, MMS or WhatsApp message from Twilio's webhook fields."""
    sid = _sid(params)
    sender = _required(params, "From")
    recipient = _required(params, "To")
    channel = _channel_of(sender)
    try:
        identity = phone_identity(sender, default_region)
    except InvalidIdentity as exc:
        raise MalformedPayload(f"'From' is not a usable phone number ({exc})") from None
    media = _media(params)
    body = params.get("Body", "")
    return InboundMessage(
        provider=PROVIDER,
        provider_message_id=sid,
        channel=channel,
        sender=identity,
        sender_address=sender,
        recipient_address=_display_recipient(recipient, default_region),
        body=body or params.get("ButtonText", "") or _location_text(params),
        media=media,
        profile_name=(params.get("ProfileName") or "").strip() or None,
        provider_account=params.get("AccountSid") or None,
    )


def _display_recipient(recipient: str, default_region: str) -> str:
    prefix = "whatsapp:" if recipient.lower().startswith("whatsapp:") else ""
    try:
        return prefix + normalize_phone(recipient, default_region)
    except InvalidIdentity:
        return recipient  # a short code or alphanumeric sender id is kept as sent


def _location_text(params: FormParams) -> str:
    latitude, longitude = params.get("Latitude"), params.get("Longitude")
    if not latitude or not longitude:
        return ""
    label = params.get("Label") or params.get("Address") or "Location"
    return f"{label}: {latitude},{longitude}"


def parse_status(params: FormParams) -> StatusUpdate:
    """A delivery status callback for a message the hub sent."""
    sid = _sid(params)
    raw_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not raw_status:
        raise MalformedPayload("'MessageStatus' is required")
    status = _STATUSES.get(raw_status)
    if status is None:
        raise MalformedPayload(f"unknown 'MessageStatus' '{raw_status}'")
    return StatusUpdate(
        provider=PROVIDER,
        provider_message_id=sid,
        status=status,
        error_code=(params.get("ErrorCode") or "").strip() or None,
        error_message=(params.get("ErrorMessage") or "").strip() or None,
    )


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


# --------------------------------------------------------------------------------------------
# Sending


DEFAULT_API_BASE_URL = "https://api.twilio.com"
SEND_TIMEOUT_SECONDS = 10.0


def send_message(
    *,
    account_sid: str,
    auth_token: str,
    to: str,
    body: str = "",
    media_urls: list[str] | None = None,
    from_: str | None = None,
    messaging_service_sid: str | None = None,
    status_callback: str | None = None,
    content_sid: str | None = None,
    content_variables: Mapping[str, str] | None = None,
    api_base_url: str = DEFAULT_API_BASE_URL,
    timeout: float = SEND_TIMEOUT_SECONDS,
) -> SentMessage:
    """Create a Message through Twilio's REST API (SMS, MMS or WhatsApp, as `to` and `from_` say).

    A Messaging Service, when given, picks the sender unless `from_` names one of its senders.
    `content_sid` sends a Content API template
    (a WhatsApp template outside the 24-hour window) with its `content_variables`. Raises
    ProviderRejected for a 4xx (Twilio's error code kept) and ProviderUnavailable for network
    failures, timeouts, 429 and 5xx.
    """
    import requests
    from twilio.base.exceptions import TwilioRestException

    kwargs: dict[str, Any] = {"to": to}
    if messaging_service_sid:
        kwargs["messaging_service_sid"] = messaging_service_sid
    if from_:
        kwargs["from_"] = from_
    if body:
        kwargs["body"] = body
    if media_urls:
        kwargs["media_url"] = list(media_urls)
    if content_sid:
        kwargs["content_sid"] = content_sid
    if content_variables:
        kwargs["content_variables"] = json.dumps(dict(content_variables), separators=(",", ":"))
    if status_callback:
        kwargs["status_callback"] = status_callback
    client = _rest_client(account_sid, auth_token, api_base_url.rstrip("/"), timeout)
    try:
        created = client.messages.create(**kwargs)
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise ProviderUnavailable(PROVIDER, f"HTTP {exc.status} (error {exc.code})") from None
        code = str(exc.code if exc.code is not None else exc.status)
        raise ProviderRejected(PROVIDER, code, str(exc.msg or f"HTTP {exc.status}"), exc.status) from None
    except requests.RequestException as exc:
        raise ProviderUnavailable(PROVIDER, type(exc).__name__) from None
    status = _STATUSES.get(str(created.status or "").lower(), DeliveryStatus.QUEUED)
    return SentMessage(
        provider=PROVIDER,
        provider_message_id=created.sid,
        status=status,
        sender_address=created.from_ or from_ or None,
        recipient_address=created.to or to,
    )


@functools.lru_cache(maxsize=8)
def _rest_client(account_sid: str, auth_token: str, api_base_url: str, timeout: float) -> Any:
    """One twilio Client per configuration, kept warm across invocations (its session pools connections)."""
    from twilio.rest import Client

    http_client = _http_client_class()(api_base_url, timeout=timeout)
    return Client(account_sid, auth_token, http_client=http_client)


@functools.cache
def _http_client_class() -> type:
    """twilio's documented `http_client=` extension point, sending every call to another base URL.

    Defined on first use so importing this module never imports twilio (cold start).
    """
    from urllib.parse import urlsplit, urlunsplit

    from twilio.http.http_client import TwilioHttpClient

    class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]
        def __init__(self, base_url: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._base = urlsplit(base_url)
            self._redirected = base_url != DEFAULT_API_BASE_URL
            if self._redirected and self.session is not None:
                # Proxy variables and ~/.netrc must not hijack calls to a local sandbox.
                self.session.trust_env = False

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if self._redirected:
                target = urlsplit(url)._replace(scheme=self._base.scheme, netloc=self._base.netloc)
                url = urlunsplit(target)
            return super().request(method, url, *args, **kwargs)

    return BaseUrlHttpClient
