"""Agents: who can take which conversations, and how many at once."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.domain.messages import Channel

# Every channel a conversation can be on can be given capacity: an agent without a channel in its
# capacity never gets that channel's conversations.
CHANNELS = tuple(channel.value for channel in Channel)


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class AgentProfile(BaseModel):
    """What the business sets with PUT /v1/agents/{id}."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    crm_user_id: str | None = Field(default=None, max_length=200)
    skills: dict[str, int] = Field(default_factory=dict)
    capacity: dict[str, int] = Field(default_factory=dict)
    multi_channel: bool = True
    auto_accept: bool = False

    @field_validator("skills")
    @classmethod
    def _skill_levels(cls, value: dict[str, int]) -> dict[str, int]:
        if len(value) > 50:
            raise ValueError("at most 50 skills")
        for skill, level in value.items():
            if not skill or len(skill) > 64:
                raise ValueError("skill names must be 1 to 64 characters")
            if not 1 <= level <= 10:
                raise ValueError(f"skill '{skill}' level must be from 1 to 10")
        return value

    @field_validator("capacity")
    @classmethod
    def _capacities(cls, value: dict[str, int]) -> dict[str, int]:
        for channel, slots in value.items():
            if channel not in CHANNELS:
                raise ValueError(f"unknown channel '{channel}' (known: {', '.join(CHANNELS)})")
            if not 0 <= slots <= 100:
                raise ValueError(f"capacity for '{channel}' must be from 0 to 100")
        return value


class Agent(AgentProfile):
    model_config = ConfigDict(extra="ignore")  # stored items carry their keys too

    id: str
    status: AgentStatus = AgentStatus.OFFLINE
    status_changed_at: datetime
    # Offers and assigned conversations held, per channel; never above capacity (the store's
    # conditional writes enforce it, this model only reports it).
    load: dict[str, int] = Field(default_factory=dict)
    total_load: int = 0
    active_channel: str | None = None
    last_offer_at: datetime | None = None
    offer_ids: list[str] = Field(default_factory=list)
    conversation_ids: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    # Bumped by every write: each write is conditioned on the version it read, so the agent's
    # availability entries (copies of it) can never drift from it.
    version: int = 0
    # The availability-index shard its entries were last written to (store/agents.py).
    index_shard: int = 0

    def spare(self, channel: str) -> int:
        return max(0, self.capacity.get(channel, 0) - self.load.get(channel, 0))

    def can_take(self, channel: str) -> bool:
        if self.status is not AgentStatus.AVAILABLE or self.spare(channel) <= 0:
            return False
        return self.multi_channel or self.total_load == 0 or self.active_channel == channel

    @property
    def idle_since(self) -> datetime:
        """When the agent last got work or became available, whichever is later."""
        if self.last_offer_at and self.last_offer_at > self.status_changed_at:
            return self.last_offer_at
        return self.status_changed_at

    def has_skills(self, required: dict[str, int]) -> bool:
        return all(self.skills.get(skill, 0) >= level for skill, level in required.items())

    # --- Transitions (pure; the store writes `after` conditioned on `before.version`) -----------

    def taking(self, offer_id: str, channel: str, now: datetime) -> Agent:
        """The agent is offered a conversation on `channel`: one slot there is reserved."""
        if not self.can_take(channel):
            raise ValueError(f"agent '{self.id}' cannot take a conversation on {channel}")
        load = {**self.load, channel: self.load.get(channel, 0) + 1}
        return self.model_copy(
            update={
                "load": load,
                "total_load": self.total_load + 1,
                "active_channel": channel,
                "last_offer_at": now,
                "offer_ids": sorted({*self.offer_ids, offer_id}),
            }
        )

    def accepting(self, offer_id: str, conversation_id: str) -> Agent:
        """The offer becomes a held conversation; the slot stays reserved."""
        return self.model_copy(
            update={
                "offer_ids": [held for held in self.offer_ids if held != offer_id],
                "conversation_ids": sorted({*self.conversation_ids, conversation_id}),
            }
        )

    def releasing(self, channel: str, *, offer_id: str | None = None, conversation_id: str | None = None) -> Agent:
        """An offer or a held conversation on `channel` ends: its slot is freed."""
        load = {**self.load, channel: max(0, self.load.get(channel, 0) - 1)}
        return self.model_copy(
            update={
                "load": load,
                "total_load": max(0, self.total_load - 1),
                "offer_ids": [held for held in self.offer_ids if held != offer_id],
                "conversation_ids": [held for held in self.conversation_ids if held != conversation_id],
            }
        )

    def holds_slot(self, channel: str, *, offer_id: str | None = None, conversation_id: str | None = None) -> bool:
        if self.load.get(channel, 0) < 1:
            return False
        if offer_id is not None:
            return offer_id in self.offer_ids
        return conversation_id is None or conversation_id in self.conversation_ids


def _moment(value: datetime) -> str:
    """A fixed-width UTC time that sorts as a string (isoformat() drops zero microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def availability_ranks(agent: Agent | None) -> dict[str, str]:
    """Where the agent stands in the availability index, per channel it can take work on now:
    most spare capacity first, then idle longest, then by id (domain/routing.choose_agent's order).
    A channel it cannot take work on has no entry at all, so the index holds only candidates."""
    if agent is None:
        return {}
    return {
        channel: f"{MAX_SLOTS - agent.spare(channel):03d}#{_moment(agent.idle_since)}#{agent.id}"
        for channel in sorted(agent.capacity)
        if agent.can_take(channel)
    }


MAX_SLOTS = 100  # AgentProfile's limit on capacity per channel
ALL_CHANNELS = "all"


def roster_counts(agent: Agent | None) -> dict[tuple[str, str], int]:
    """What one agent adds to the live roster counts: its status on each channel it has capacity
    for, and overall (`all`). Status only, never load: offers and releases leave these counts
    alone, so the hot path of routing never writes a shared item (issue 13)."""
    if agent is None:
        return {}
    channels = [channel for channel, slots in sorted(agent.capacity.items()) if slots > 0] + [ALL_CHANNELS]
    return {(channel, agent.status.value): 1 for channel in channels}


def roster_moves(before: Agent | None, after: Agent | None) -> dict[tuple[str, str], int]:
    """How the live roster counts move when an agent changes from `before` to `after`."""
    was, now = roster_counts(before), roster_counts(after)
    moves = {key: now.get(key, 0) - was.get(key, 0) for key in set(was) | set(now)}
    return {key: delta for key, delta in moves.items() if delta}
