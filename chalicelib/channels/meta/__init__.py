"""Meta: the WhatsApp Cloud API, Messenger and Instagram messaging, behind one app and one webhook.

The channel contract (channels/registry.py), and nothing else; each job has its own module:

    webhook.py    the envelope: X-Hub-Signature-256, the GET handshake, the JSON envelope whose
                  entries go to the product that sent them
    whatsapp.py   WhatsApp Cloud API changes: customers' messages, statuses of what the hub sent
    messenger.py  Messenger and Instagram messaging events
    graph.py      sending through the Graph API
    fields.py     what they share: the provider's name and careful readers of Meta's JSON
"""

from __future__ import annotations

from chalicelib.channels.meta.fields import PROVIDER
from chalicelib.channels.meta.graph import RULES, missing_settings, page_payloads, send, whatsapp_payloads
from chalicelib.channels.meta.webhook import (
    ACKNOWLEDGEMENT,
    ACKNOWLEDGEMENT_TYPE,
    acknowledgement,
    handshake,
    parse,
    signature,
    verify,
)

__all__ = [
    "ACKNOWLEDGEMENT",
    "ACKNOWLEDGEMENT_TYPE",
    "PROVIDER",
    "RULES",
    "acknowledgement",
    "handshake",
    "missing_settings",
    "page_payloads",
    "parse",
    "send",
    "signature",
    "verify",
    "whatsapp_payloads",
]
