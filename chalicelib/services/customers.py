"""Customer and thread use cases behind the REST API."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from chalicelib.api.models import CustomerPatch
from chalicelib.config import settings
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.identity import Identity, IdentityKind, channel_identity, email_identity, phone_identity
from chalicelib.domain.messages import Channel, Message, utcnow
from chalicelib.services.errors import Conflict, InvalidRequest, NotFound, Unavailable
from chalicelib.store import customers as customer_store
from chalicelib.store import thread

MAX_PAGE = 200
LOOKUP_CHANNELS = tuple(channel.value for channel in Channel)
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def find_customer(
    phone: str | None = None, email: str | None = None, channel: str | None = None, address: str | None = None
) -> Customer | None:
    """The customer an identity belongs to: any form of a phone number or email address, or a
    channel and the customer's address on it (`telegram` and a user id, `messenger` and a PSID)."""
    if phone is not None:
        identity = phone_identity(phone, settings().default_phone_region)
    elif email is not None:
        identity = email_identity(email)
    elif channel is not None and address is not None:
        name = channel.strip().lower()
        if name not in LOOKUP_CHANNELS:
            raise InvalidRequest(f"unknown channel '{channel[:40]}'; use one of {', '.join(LOOKUP_CHANNELS)}")
        identity = channel_identity(name, address, settings().default_phone_region)
    else:
        raise InvalidRequest("give 'phone', 'email', or 'channel' and 'address' to look a customer up")
    ref = thread.find_identity(identity)
    return customer_store.get_customer(ref.customer_id) if ref else None


def get_customer(customer_id: str) -> Customer:
    customer = customer_store.get_customer(customer_id)
    if customer is None:
        raise NotFound(f"no customer '{customer_id}'")
    return customer


def patch_customer(customer_id: str, patch: CustomerPatch) -> Customer:
    region = settings().default_phone_region
    given = patch.model_fields_set
    new_email = email_identity(patch.email) if "email" in given and patch.email else None
    new_phone = phone_identity(patch.phone, region) if "phone" in given and patch.phone else None
    for _ in range(5):
        before = get_customer(customer_id)
        identities = list(before.identities)
        linking: list[Identity] = []
        for identity in (new_email, new_phone):
            if identity is not None and identity not in identities:
                identities.append(identity)
                linking.append(identity)
        after = before.model_copy(
            update={
                "name": patch.name if "name" in given else before.name,
                "email": (new_email.value if new_email else None) if "email" in given else before.email,
                "phone": (new_phone.value if new_phone else None) if "phone" in given else before.phone,
                "attributes": _merged(before.attributes, patch.attributes or {}),
                "preferred_channel": (
                    patch.preferred_channel if "preferred_channel" in given else before.preferred_channel
                ),
                "timezone": patch.timezone if "timezone" in given else before.timezone,
                "quiet_hours": (patch.quiet_hours.model_dump() if patch.quiet_hours else None)
                if "quiet_hours" in given
                else before.quiet_hours,
                "identities": identities,
                "updated_at": max(utcnow(), before.updated_at),
                "version": before.version + 1,
            }
        )
        try:
            saved = customer_store.save_profile(before, after, linking, patch.attributes or {})
        except customer_store.IdentityBelongsToAnother as exc:
            kind = "phone number" if exc.identity.kind is IdentityKind.PHONE else "email address"
            raise Conflict(
                f"that {kind} already belongs to customer {exc.owner_id}; it cannot be linked to {customer_id}"
            ) from None
        except customer_store.ChangedMeanwhile:
            continue
        _announce_update(saved)
        return saved
    raise Unavailable("the customer is being changed by other requests; retry")


def _announce_update(customer: Customer) -> None:
    from chalicelib.api.models import customer_view
    from chalicelib.services import events

    try:
        events.emit("customer.updated", {"customer": customer_view(customer)}, f"{customer.id}:v{customer.version}")
    except Exception as exc:
        raise Unavailable("the change is saved but the CRM could not be told yet; retry") from exc


def _merged(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def get_conversation(conversation_id: str) -> Conversation:
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation '{conversation_id}'")
    return conversation


def encode_cursor(message: Message) -> str:
    return base64.urlsafe_b64encode(message.id.removeprefix("msg_").encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not _ULID.match(decoded):
        raise InvalidRequest("'cursor' is not one this API returned")
    return "msg_" + decoded


def list_messages(conversation_id: str, limit: int, cursor: str | None) -> tuple[list[Message], str | None]:
    get_conversation(conversation_id)
    after = decode_cursor(cursor) if cursor else None
    messages, more = thread.list_messages(conversation_id, limit, after)
    next_cursor = encode_cursor(messages[-1]) if more and messages else None
    return messages, next_cursor
