"""Which module sends for which provider.

A chat-app module (meta, telegram, line, wechat) offers the same three things, so the reply and
notification use cases need not know any wire format:

    PROVIDER: str                                   the provider's name in stored messages
    verify(request: WebhookRequest) -> None         raises WebhookRejected (403, nothing stored)
    parse(request: WebhookRequest) -> list[WebhookItem]
                                                    raises MalformedPayload (400); never anything else
    acknowledgement(outcome: BatchOutcome) -> str   the 200 body the provider expects
    handshake(request: WebhookRequest) -> str       (Meta, WeChat) the GET verification's answer,
                                                    or WebhookRejected
    missing_settings(channel: str) -> list[str]     settings a send on `channel` still needs
    send(outgoing: Outgoing) -> SentMessage         raises ProviderRejected / ProviderUnavailable

Adding a chat app means adding its module, a line here and its webhook route in app.py.
Twilio (SMS, WhatsApp) and SendGrid (email) predate this contract and are called directly.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SENDERS: dict[str, str] = {
    "meta": "chalicelib.channels.meta",
    "telegram": "chalicelib.channels.telegram",
    "line": "chalicelib.channels.line",
    "wechat": "chalicelib.channels.wechat",
}


def sender(provider: str) -> ModuleType:
    """The channel module that sends for `provider` (imported on first use: cold starts stay lean)."""
    return importlib.import_module(SENDERS[provider])


def has_sender(provider: str) -> bool:
    return provider in SENDERS
