"""Every setting the hub reads, in one place: one field each, with its default and its description.

Each field is read from the environment variable of the same name in upper case
(`twilio_sms_from` ← `TWILIO_SMS_FROM`). The README's configuration table is generated from
these fields (`python -m chalicelib.config`) and a test keeps the two equal.

Secrets (fields marked `secret`) are plain environment variables locally. In AWS each may instead
name an SSM SecureString parameter through `<NAME>_PARAMETER` (for example
`TWILIO_AUTH_TOKEN_PARAMETER=/omnihub/prod/twilio-auth-token`); `secret()` reads it with
Powertools Parameters and caches it for `SECRET_CACHE_SECONDS`.

A value that does not parse (a word where a number belongs) or breaks a field's bounds is ignored
with a warning and the default applies: a typo in one setting must not turn every request into a 500.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET = {"secret": True}
OFF_WORDS = ("off", "none", "false")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- Where data and work go -----------------------------------------------------------------
    table_name: str = Field("omnihub", description="the DynamoDB table (set by the deployment and the local stack)")
    routing_queue_url: str = Field("", description="the routing FIFO queue")
    timer_queue_url: str = Field("", description="the timer queue (SQS delays)")
    crm_events_queue_url: str = Field("", description="the CRM events queue")
    crm_events_queue_dlq_url: str = Field("", description="the CRM events dead-letter queue")
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="the URL providers call, as they sign it (include the API stage or base path)",
    )
    default_phone_region: str = Field("US", description="ISO region for national-format phone numbers")
    max_body_bytes: int = Field(5 * 1024 * 1024, description="larger request bodies get 413")
    aws_timeout_seconds: float = Field(
        5.0, description="timeout of each AWS call (Twilio retries a webhook after 15 s: answer well within that)"
    )
    secret_cache_seconds: int = Field(300, description="how long a secret read from SSM is cached")
    # Blank falls back to the default too (min_length): EMF needs a namespace and a service.
    powertools_service_name: str = Field("omnihub", description="the service dimension of the metrics", min_length=1)
    powertools_metrics_namespace: str = Field(
        "Omnihub", description="the CloudWatch namespace of the metrics", min_length=1
    )

    # --- Secrets of the edge ------------------------------------------------------------------------
    hub_api_key: str = Field(
        "", description="the API key CRMs send as 'Authorization: Bearer'", json_schema_extra=SECRET
    )
    twilio_auth_token: str = Field(
        "", description="verifies Twilio's signatures and authenticates sends", json_schema_extra=SECRET
    )
    sendgrid_inbound_token: str = Field(
        "", description="the Inbound Parse shared secret (Basic password or ?token=)", json_schema_extra=SECRET
    )

    # --- Sending: Twilio (SMS, WhatsApp) and SendGrid (email) ----------------------------------------
    twilio_account_sid: str = Field("", description="the Twilio account that sends SMS and WhatsApp")
    twilio_sms_from: str = Field(
        "", description="the SMS sender when the customer never wrote to a business number (E.164)"
    )
    twilio_whatsapp_from: str = Field(
        "", description="the WhatsApp sender when the customer never wrote to a business number"
    )
    twilio_messaging_service_sid: str = Field(
        "", description="a Messaging Service that picks the sender when no business number is known"
    )
    twilio_api_base_url: str = Field("https://api.twilio.com", description="where the Twilio client sends")
    twilio_whatsapp_templates: str = Field(
        "", description="JSON: template name → Twilio Content SID ('HX...') for WhatsApp outside the 24-hour window"
    )
    sendgrid_api_key: str = Field("", description="the SendGrid API key that sends email", json_schema_extra=SECRET)
    sendgrid_from_email: str = Field(
        "", description="the email sender when the customer never wrote to a business address"
    )
    sendgrid_from_name: str = Field("", description="the display name of email the hub sends")
    sendgrid_api_base_url: str = Field("https://api.sendgrid.com", description="where the SendGrid client sends")
    provider_timeout_seconds: float = Field(10.0, description="timeout of one provider send (0 to 25 s)", gt=0, le=25)

    # --- The business, consent and notifications -------------------------------------------------------
    business_name: str = Field(
        "",
        description="the business's name in consent answers, invitations and email footers "
        "(else SENDGRID_FROM_NAME, else 'omnihub')",
    )
    consent_stop_text: str = Field(
        "{business_name}: you are unsubscribed and will get no more messages here. Reply START to resubscribe.",
        description="the answer to STOP",
    )
    consent_start_text: str = Field(
        "{business_name}: you are subscribed again. Reply STOP to unsubscribe, HELP for help.",
        description="the answer to START",
    )
    consent_help_text: str = Field(
        "{business_name}: reply here with your question and our team will answer. "
        "Reply STOP to unsubscribe, START to resubscribe.",
        description="the answer to HELP",
    )
    consent_send_confirmations: str = Field(
        "true", description="answer consent keywords: true, false, or the channels to answer on (e.g. 'whatsapp')"
    )
    unsubscribe_secret: str = Field(
        "", description="signs the one-click unsubscribe link of every email", json_schema_extra=SECRET
    )
    unsubscribe_mailto: str = Field(
        "", description="the List-Unsubscribe mailto: address (else SENDGRID_FROM_EMAIL; 'off' for none)"
    )
    notification_templates: str = Field(
        "", description="JSON: template name → text with {param}s, or {'text', 'subject'} for email"
    )
    default_customer_timezone: str = Field("UTC", description="the time zone of quiet hours for customers without one")

    # --- Handoff links and web chat ------------------------------------------------------------------------
    link_secret: str = Field("", description="signs handoff link tokens", json_schema_extra=SECRET)
    link_ttl_hours: float = Field(24.0, description="how long a handoff link stays valid", ge=0)
    webchat_session_secret: str = Field(
        "", description="signs web chat session tokens (web chat is off without it)", json_schema_extra=SECRET
    )
    webchat_jwt_secret: str = Field(
        "", description="verifies the HS256 sign-in token of a signed-in visitor", json_schema_extra=SECRET
    )
    webchat_allowed_origins: str = Field(
        "", description="comma-separated origins that may embed the chat ('*' for any)"
    )
    webchat_session_ttl_seconds: int = Field(
        7 * 24 * 3600, description="how long a web chat session lives (300 s to 90 days)", ge=300, le=90 * 24 * 3600
    )
    webchat_offline_after_seconds: float = Field(
        60.0, description="a visitor whose page has not polled for this long also gets agent replies as a notification"
    )

    # --- Routing and the CRM ----------------------------------------------------------------------------------
    routing_config: str = Field("", description="routing rules and timings as JSON (see 'Routing')")
    routing_config_file: str = Field("", description="a JSON file with the routing rules, when ROUTING_CONFIG is unset")
    # At most 25 s: the CRM worker runs 30 s and re-queues a delivery it has no time left to make,
    # so a longer timeout would re-queue every delivery forever.
    webhook_timeout_seconds: float = Field(5.0, description="timeout of one CRM webhook delivery", ge=0.1, le=25)
    webhook_max_attempts: int = Field(8, description="deliveries of one CRM event before it is dead-lettered", ge=1)
    webhook_retry_base_seconds: float = Field(
        5.0, description="first retry delay of a CRM delivery (doubled per attempt, at most 900 s)", ge=0
    )
    allow_insecure_webhook_urls: bool = Field(False, description="accept http:// CRM webhook URLs on any host")
    routing_shards: int = Field(
        4,
        ge=1,
        le=64,
        description="partitions the availability index and each queue are spread over (README 'How it is built': "
        "4 hold 20,000 agents and 200 new conversations/s); raise it, never lower it, on a live table",
    )

    # --- Analytics and the dashboard ------------------------------------------------------------------------------
    analytics_shards: int = Field(
        4,
        ge=1,
        le=64,
        description="partitions the analytics counts and cycle rows are spread over (each takes 1/N of the writes; "
        "a summary reads N partitions per month)",
    )
    analytics_timezone: str = Field(
        "UTC",
        description="the IANA time zone whose days the daily analytics counts follow (summaries by day in it read "
        "one item per day; in another tz they read hourly counts)",
    )
    event_log_stream: str = Field(
        "",
        description="the Kinesis Data Firehose delivery stream every event is also written to, one NDJSON line "
        "each, for Athena (blank: no event history; the deployment and the local stack set it)",
    )
    dashboard_session_hours: float = Field(
        12.0, gt=0, le=720, description="how long a dashboard sign-in lasts before the API key is asked again"
    )

    # --- Chat apps --------------------------------------------------------------------------------------------------
    meta_app_secret: str = Field("", description="verifies Meta's X-Hub-Signature-256", json_schema_extra=SECRET)
    meta_verify_token: str = Field(
        "", description="answers Meta's GET verification (hub.verify_token)", json_schema_extra=SECRET
    )
    meta_access_token: str = Field("", description="sends through the Graph API", json_schema_extra=SECRET)
    meta_graph_base_url: str = Field("https://graph.facebook.com", description="where the Graph API calls go")
    meta_graph_version: str = Field("v21.0", description="the Graph API version")
    meta_whatsapp_phone_number_id: str = Field("", description="the WhatsApp Cloud API phone number id")
    meta_whatsapp_number: str = Field("", description="the business's WhatsApp number (E.164), for wa.me links")
    meta_whatsapp_template_language: str = Field(
        "en_US", description="language of the approved WhatsApp templates notifications use"
    )
    meta_page_id: str = Field("", description="the Facebook Page (Messenger)")
    meta_page_username: str = Field("", description="the Page's username, for m.me links")
    meta_instagram_account_id: str = Field("", description="the Instagram professional account")
    telegram_bot_token: str = Field("", description="the Telegram bot's token", json_schema_extra=SECRET)
    telegram_secret_token: str = Field(
        "", description="checked against X-Telegram-Bot-Api-Secret-Token", json_schema_extra=SECRET
    )
    telegram_api_base_url: str = Field("https://api.telegram.org", description="where Bot API calls go")
    telegram_bot_username: str = Field("", description="the bot's username, for t.me links")
    line_channel_secret: str = Field("", description="verifies X-Line-Signature", json_schema_extra=SECRET)
    line_channel_access_token: str = Field("", description="sends through the Messaging API", json_schema_extra=SECRET)
    line_api_base_url: str = Field("https://api.line.me", description="where Messaging API calls go")
    line_basic_id: str = Field("", description="the official account's basic id (@123abcde), for links")
    wechat_token: str = Field("", description="verifies WeChat's signature", json_schema_extra=SECRET)
    wechat_app_id: str = Field("", description="the Official Account's AppID")
    wechat_app_secret: str = Field("", description="fetches the API access token", json_schema_extra=SECRET)
    wechat_api_base_url: str = Field("https://api.weixin.qq.com", description="where WeChat API calls go")

    @field_validator("*", mode="wrap")
    @classmethod
    def _default_when_invalid(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: Any) -> Any:
        field = cls.model_fields[info.field_name]
        if isinstance(value, str) and not value.strip() and field.default not in ("", None):
            return field.default  # set but blank (FOO= in an env file) means the default
        try:
            return handler(value)
        except ValidationError:
            sys.stderr.write(f"omnihub: ignoring an invalid value of {info.field_name.upper()}; using the default\n")
            return field.default

    @property
    def display_name(self) -> str:
        """Who the hub speaks for: BUSINESS_NAME, else the email sender's name, else 'omnihub'."""
        return self.business_name.strip() or self.sendgrid_from_name.strip() or "omnihub"

    @property
    def unsubscribe_address(self) -> str:
        """The List-Unsubscribe mailto: address, or '' for none."""
        chosen = self.unsubscribe_mailto.strip() or self.sendgrid_from_email.strip()
        return "" if chosen.lower() in OFF_WORDS else chosen

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        listed = self.webchat_allowed_origins.split(",")
        return tuple(origin.strip().rstrip("/") for origin in listed if origin.strip())


class _SettingsCache:
    """`settings()`: the Settings, built again only when the environment changed.

    Lambda's environment never changes; the local stack and the tests change it at run time, and
    every change must apply at once. Comparing the environment costs microseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: int | None = None
        self._value: Settings | None = None

    def __call__(self) -> Settings:
        key = hash(frozenset(os.environ.items()))
        with self._lock:
            if self._value is None or key != self._key:
                self._value, self._key = Settings(), key
            return self._value

    def cache_clear(self) -> None:
        with self._lock:
            self._value = self._key = None


settings = _SettingsCache()


def secret(name: str) -> str:
    """A secret setting: its value, else the SSM parameter `<NAME>_PARAMETER` names, else ''."""
    value = str(getattr(settings(), name.lower()))
    if value:
        return value
    parameter = os.environ.get(f"{name.upper()}_PARAMETER", "")
    if not parameter:
        return ""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        fetched = parameters.get_parameter(parameter, decrypt=True, max_age=settings().secret_cache_seconds)
    except GetParameterError as exc:
        if "ParameterNotFound" not in str(exc):
            raise  # SSM unreachable: the request fails with a 5xx and the provider retries
        # A channel the business does not use: its secret is simply unset (its webhooks are refused).
        from chalicelib.observability import logger

        logger.warning("secret parameter not found; treated as unset", extra={"setting": name.upper()})
        return ""
    return str(fetched or "")


def markdown_table() -> str:
    """The README's configuration table, one row per field (the README holds it between the
    `<!-- settings:begin -->` and `<!-- settings:end -->` markers, and a test keeps them equal)."""
    rows = ["| Setting | Default | Allowed | What it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        cells = (_code(name.upper()), _default(field), _allowed(field), _cell(field.description or ""))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    """Text safe in one Markdown table cell: one line, with its pipes escaped (GitHub's tables
    need the escape inside code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """A code span, fenced with more backticks than the text holds."""
    fence = "`"
    while fence in text:
        fence += "`"
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return _cell(f"{fence}{padding}{text}{padding}{fence}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _default(field: Any) -> str:
    default = field.get_default(call_default_factory=True)
    if (field.json_schema_extra or {}).get("secret"):
        return "(secret)"
    if isinstance(default, bool):
        return _code(str(default).lower())
    if isinstance(default, int | float):
        return _code(_number(default))
    if isinstance(default, dict | list):
        return _code(json.dumps(default, separators=(",", ":"), ensure_ascii=False))
    return _code(str(default)) if default != "" else "(none)"


def _allowed(field: Any) -> str:
    """The field's type and bounds, as `settings()` enforces them (anything else: the default)."""
    kind = {bool: "true or false", int: "integer", float: "number"}.get(field.annotation, "")
    bounds = []
    for constraint in field.metadata:
        for attribute, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(constraint, attribute, None) is not None:
                bounds.append(f"{sign} {_number(getattr(constraint, attribute))}")
        if getattr(constraint, "min_length", None):
            bounds.append("not empty")
    return _cell(" ".join([kind, ", ".join(bounds)]).strip())


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
