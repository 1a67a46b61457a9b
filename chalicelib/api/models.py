"""Request bodies of the REST API and the JSON shapes it answers with."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.messages import Message

MAX_ATTRIBUTES = 50


class CustomerPatch(BaseModel):
    """Fields a CRM may set. Omitted fields stay as they are; null clears name/email/phone.
    `attributes` merges key by key (JSON Merge Patch): a null value removes that attribute."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    attributes: dict[str, Any] | None = None

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes per request")
        for key in value:
            if not key or len(key) > 64:
                raise ValueError("attribute names must be 1 to 64 characters")
        return value


def customer_view(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.display_name,
        "business_name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "attributes": customer.attributes,
        "provider_names": customer.provider_names,
        "identities": [identity.model_dump(mode="json") for identity in customer.identities],
        "conversation_id": customer.conversation_id,
        "last_channel": customer.last_channel,
        "last_inbound_at": _iso(customer.last_inbound_at),
        "created_at": _iso(customer.created_at),
        "updated_at": _iso(customer.updated_at),
    }


def conversation_view(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "customer_id": conversation.customer_id,
        "status": conversation.status,
        "channels": sorted(channel.value for channel in conversation.channels),
        "counts": {
            "messages": conversation.message_count,
            "inbound": conversation.inbound_count,
            "outbound": conversation.outbound_count,
        },
        "last_message_id": conversation.last_message_id,
        "last_message_at": _iso(conversation.last_message_at),
        "last_channel": conversation.last_channel,
        "waiting_since": _iso(conversation.waiting_since),
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
    }


def message_view(message: Message) -> dict[str, Any]:
    data = message.model_dump(mode="json")
    for field in ("created_at", "status_updated_at"):
        data[field] = _iso(getattr(message, field))
    return data


def _iso(value: Any) -> str | None:
    """ISO 8601 in UTC with a Z, the form every CRM parses."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
