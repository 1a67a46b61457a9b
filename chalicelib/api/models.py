"""Request bodies of the REST API and the JSON shapes it answers with."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.agents import Agent, AgentStatus
from chalicelib.domain.attributes import check_attributes
from chalicelib.domain.consent import NOTIFICATION_CHANNELS, QuietHours, check_timezone, opted_out_view
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.links import LinkTarget
from chalicelib.domain.messages import Channel, Message
from chalicelib.domain.offers import Offer

MAX_ATTRIBUTES = 50


class CustomerPatch(BaseModel):
    """Fields a CRM may set. Omitted fields stay as they are; null clears name/email/phone.
    `attributes` merges key by key (JSON Merge Patch): a null value removes that attribute."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    attributes: dict[str, Any] | None = None
    # Notification preferences; null clears each.
    preferred_channel: Channel | None = None
    timezone: str | None = Field(default=None, max_length=64)
    quiet_hours: QuietHours | None = None

    @field_validator("preferred_channel")
    @classmethod
    def _notifiable(cls, value: Channel | None) -> Channel | None:
        if value is not None and value not in NOTIFICATION_CHANNELS:
            names = ", ".join(channel.value for channel in NOTIFICATION_CHANNELS)
            raise ValueError(f"preferred_channel must be one of {names}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

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
        check_attributes(value)
        return value


class LinkRequest(BaseModel):
    """Invite the customer to continue on `target`; the invitation goes out on `via` (default:
    the channel they last wrote from), sent as `agent_id` when an agent sends it (automations and
    bots leave it out)."""

    model_config = ConfigDict(extra="forbid")

    target: LinkTarget
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)
    via: Channel | None = None


class AgentStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AgentStatus


class TransferRequest(BaseModel):
    """To one agent (`agent_id`), or back to a queue with the skills the next agent needs."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = None
    skills: dict[str, int] | None = None
    queue: str | None = None

    @field_validator("skills")
    @classmethod
    def _levels(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for skill, level in (value or {}).items():
            if not skill or len(skill) > 64 or not 1 <= level <= 10:
                raise ValueError("skills map names (1 to 64 characters) to levels from 1 to 10")
        if value is not None and len(value) > 50:
            raise ValueError("at most 50 skills")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> TransferRequest:
        if self.agent_id is None and self.skills is None and self.queue is None:
            raise ValueError("give 'agent_id', or 'skills' and/or 'queue'")
        if self.agent_id is not None and (self.skills is not None or self.queue is not None):
            raise ValueError("transfer to an agent or to skills/queue, not both")
        return self


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
        "preferred_channel": customer.preferred_channel,
        "timezone": customer.timezone,
        "quiet_hours": customer.quiet_hours,
        "opted_out": opted_out_view(customer),
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
        "control": conversation.control.model_dump(mode="json") if conversation.control else None,
        "sla": conversation.sla.model_dump(mode="json") if conversation.sla else None,
        "survey": conversation.survey.model_dump(mode="json", exclude={"answered_by", "version"})
        if conversation.survey
        else None,
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


def agent_view(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "crm_user_id": agent.crm_user_id,
        "skills": agent.skills,
        "capacity": agent.capacity,
        "multi_channel": agent.multi_channel,
        "auto_accept": agent.auto_accept,
        "status": agent.status,
        "status_changed_at": _iso(agent.status_changed_at),
        "load": {channel: count for channel, count in agent.load.items() if count},
        "offer_ids": sorted(agent.offer_ids),
        "conversation_ids": sorted(agent.conversation_ids),
        "created_at": _iso(agent.created_at),
        "updated_at": _iso(agent.updated_at),
    }


def offer_view(offer: Offer) -> dict[str, Any]:
    # Offer times are shown as stored (`isoformat()`, `+00:00`), as this view always has.
    return {
        "id": offer.id,
        "status": offer.status.value,
        "agent_id": offer.agent_id,
        "conversation_id": offer.conversation_id,
        "customer_id": offer.customer_id,
        "channel": offer.channel,
        "queue": offer.queue,
        "created_at": offer.created_at.isoformat(),
        "expires_at": offer.expires_at.isoformat(),
        "decided_at": offer.decided_at.isoformat() if offer.decided_at else None,
    }
