"""Every channel behind one contract, by provider name.

Each provider's module (or package) offers the same things, so no other code needs to know a
wire format:

    PROVIDER: str                                   the provider's name in stored messages
    ACKNOWLEDGEMENT_TYPE: str                       the Content-Type of the webhook's answer
    verify(request: WebhookRequest) -> None         raises WebhookRejected (403, nothing stored)
    parse(request: WebhookRequest) -> list[WebhookItem]
                                                    raises MalformedPayload (400); never anything else
    acknowledgement(outcome: BatchOutcome) -> str   the 200 body the provider expects
    handshake(request: WebhookRequest) -> str       (Meta, WeChat) the GET verification's answer
    missing_settings(channel: str) -> list[str]     settings a send on `channel` still needs
    send(outgoing: Outgoing, tokens: TokenCache | None = None) -> SentMessage
                                                    raises ProviderRejected / ProviderUnavailable;
                                                    called by services/outbound.py only

Web chat is the hub's own channel: its visitors reach the hub through /webchat (sessions and
long polls, services/webchat.py), so it has no provider webhook; sending stores the message,
which the visitor's page reads.

Adding a channel means adding its module, a line here and its webhook route in app.py.
"""

from __future__ import annotations

import importlib
from types import ModuleType

CHANNELS: dict[str, str] = {
    "twilio": "chalicelib.channels.twilio",
    "sendgrid": "chalicelib.channels.sendgrid",
    "webchat": "chalicelib.channels.webchat",
    "meta": "chalicelib.channels.meta",
    "telegram": "chalicelib.channels.telegram",
    "line": "chalicelib.channels.line",
    "wechat": "chalicelib.channels.wechat",
}


def channel(provider: str) -> ModuleType:
    """The module of `provider` (imported on first use: cold starts stay lean). KeyError for an
    unknown provider."""
    return importlib.import_module(CHANNELS[provider])
