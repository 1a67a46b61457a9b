"""Settings from the environment.

Secrets (Twilio auth token, SendGrid inbound token, the hub API key) are plain environment
variables locally. In AWS each may instead name an SSM SecureString parameter through
`<NAME>_PARAMETER` (for example `TWILIO_AUTH_TOKEN_PARAMETER=/omnihub/prod/twilio/auth-token`);
it is read with Powertools Parameters and cached for `SECRET_CACHE_SECONDS`.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    table_name: str = "omnihub"
    routing_queue_url: str = ""
    timer_queue_url: str = ""
    crm_events_queue_url: str = ""
    crm_events_queue_dlq_url: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    default_phone_region: str = Field(default="US", description="ISO region for national-format numbers")
    max_body_bytes: int = 5 * 1024 * 1024
    # Twilio retries a webhook after 15 s; answer well within that even when AWS is slow.
    aws_timeout_seconds: float = 5.0
    secret_cache_seconds: int = 300
    service_name: str = "omnihub"

    twilio_auth_token: str = ""
    sendgrid_inbound_token: str = ""
    hub_api_key: str = ""

    # Chat apps. Secrets among these (app secrets, tokens) are read with `secret()`, so they may
    # live in SSM; the rest are plain settings. Base URLs point the senders at a sandbox locally.
    meta_graph_base_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v21.0"
    meta_whatsapp_phone_number_id: str = ""
    meta_whatsapp_number: str = ""  # the business's WhatsApp number (E.164), for wa.me links
    meta_whatsapp_template_language: str = "en_US"  # language of approved templates in notifications
    meta_page_id: str = ""  # Messenger: the Facebook Page; m.me links use meta_page_username
    meta_page_username: str = ""
    meta_instagram_account_id: str = ""
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_bot_username: str = ""  # for t.me/<bot>?start= links
    line_api_base_url: str = "https://api.line.me"
    line_basic_id: str = ""  # the official account's basic id (@123abcde), for click-to-chat links
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wechat_app_id: str = ""


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


def secret(name: str) -> str:
    """A secret setting: the environment variable, else the SSM parameter it names, else ''."""
    value = os.environ.get(name.upper(), "")
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
