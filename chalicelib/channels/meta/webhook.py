"""Meta's webhook envelope: the signature, the GET handshake, and the JSON envelope whose entries
are handed to the product that sent them.

One Meta app delivers WhatsApp, Messenger and Instagram to `POST /webhooks/meta`, signed the same
way: `X-Hub-Signature-256: sha256=<hex>` is HMAC-SHA256 over the raw body with the app secret. The
body is checked byte for byte before it is read as JSON: Meta escapes non-ASCII text as `\\uXXXX`,
so JSON re-serialised by anything else would not match. Before it sends anything, Meta proves the
URL with a GET carrying `hub.mode=subscribe`, the verify token set in the App Dashboard, and a
`hub.challenge` to echo back.

One request batches events: `object` names the product and `entry[]` holds them. Only an envelope
that is not Meta's shape at all is refused (400); an event inside it that cannot be used is skipped
on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from chalicelib.channels.base import MalformedPayload, WebhookRejected, WebhookRequest
from chalicelib.channels.meta import messenger, whatsapp
from chalicelib.domain.messages import Channel
from chalicelib.domain.webhook_items import BatchOutcome, Skipped, WebhookItem

SIGNATURE_HEADER = "x-hub-signature-256"
ACKNOWLEDGEMENT = "EVENT_RECEIVED"
ACKNOWLEDGEMENT_TYPE = "text/plain; charset=utf-8"

WHATSAPP_OBJECT = "whatsapp_business_account"
PAGE_OBJECT = "page"
INSTAGRAM_OBJECT = "instagram"
OBJECTS = (WHATSAPP_OBJECT, PAGE_OBJECT, INSTAGRAM_OBJECT)

MAX_CHALLENGE_CHARS = 256

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


# --- Verification ----------------------------------------------------------------------------


def handshake(request: WebhookRequest) -> str:
    """Answer Meta's subscription check: the challenge, if the verify token is ours."""
    from chalicelib.config import secret

    configured = secret("meta_verify_token")
    if not configured:
        raise WebhookRejected("META_VERIFY_TOKEN is not configured")
    if request.query_value("hub.mode") != "subscribe":
        raise WebhookRejected("hub.mode is not 'subscribe'")
    offered = request.query_value("hub.verify_token") or ""
    if not hmac.compare_digest(offered.encode("utf-8"), configured.encode("utf-8")):
        raise WebhookRejected("hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = request.query_value("hub.challenge") or ""
    if not challenge or len(challenge) > MAX_CHALLENGE_CHARS:
        raise MalformedPayload("hub.challenge is missing or too long")
    return challenge


def signature(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta sends with `body`."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(request: WebhookRequest) -> None:
    """Check X-Hub-Signature-256 over the raw body; nothing else is read before this passes."""
    from chalicelib.config import secret

    app_secret = secret("meta_app_secret")
    if not app_secret:
        raise WebhookRejected("META_APP_SECRET is not configured")
    header = request.header(SIGNATURE_HEADER).strip()
    if not header:
        raise WebhookRejected("X-Hub-Signature-256 header is missing")
    match = _SIGNATURE.fullmatch(header)
    if match is None:
        raise WebhookRejected("X-Hub-Signature-256 is not 'sha256=' and 64 hex digits")
    expected = hmac.new(app_secret.encode("utf-8"), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(match.group(1).lower().encode("ascii"), expected.encode("ascii")):
        raise WebhookRejected("X-Hub-Signature-256 does not match the body")


def acknowledgement(outcome: BatchOutcome) -> str:
    """Meta only needs a 200; its samples answer this text."""
    return ACKNOWLEDGEMENT


# --- The envelope ------------------------------------------------------------------------------


def parse(request: WebhookRequest) -> list[WebhookItem]:
    """Every event of a verified webhook body, as InboundMessage / StatusUpdate / Skipped items."""
    data = _load_json(request.body)
    kind = data.get("object")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload("'object' is required and must be a string")
    if kind not in OBJECTS:
        # A subscription the hub does not handle (user, permissions, ...): nothing to file.
        return [Skipped(f"object:{kind[:40]}", "not a messaging object")]
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedPayload("'entry' is required and must be a list")
    items: list[WebhookItem] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            items.append(Skipped("entry", f"entry[{index}] is not an object"))
        elif kind == WHATSAPP_OBJECT:
            items.extend(whatsapp.entry_items(entry))
        else:
            items.extend(messenger.entry_items(entry, Channel.MESSENGER if kind == PAGE_OBJECT else Channel.INSTAGRAM))
    return items


def _load_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise MalformedPayload("request body is empty; Meta sends a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        raise MalformedPayload("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("request body must be a JSON object")
    return data
