"""Agents, their directory and the availability index.

Every agent is its own partition (`AGENT#<id>`), so nothing every assignment writes shares a key.
Every write of an agent is one TransactWriteItems that

- puts the whole agent conditioned on the `version` it read (and bumps it), so concurrent writers
  can only lose a race, never merge two views of the agent;
- rewrites the agent's **availability entries**: one per channel it can take work on now, in the
  partition `AVAIL#<channel>#<shard>` (shard = hash of the agent id, ROUTING_SHARDS of them), with
  a sort key that ranks the best candidate first (domain/agents.availability_ranks). An entry is a
  copy of the agent, so a match reads candidates, and the agent it offers to, from the index alone;
- moves the live roster counts (analytics) by the agent's change.

A match therefore reads the head of one index partition, a few items whatever the number of
agents; an agent who is away, offline or full has no entry at all. The directory (`AGENTDIR`) is
written only when an agent is created or deleted and serves GET /v1/agents page by page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from typing import Any

from chalicelib.config import settings
from chalicelib.domain.agents import Agent, AgentProfile, AgentStatus, availability_ranks, roster_moves
from chalicelib.store import keys, table
from chalicelib.store.analytics import Reads
from chalicelib.store.table import TransactionCancelled

AGENT_ID = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
ROSTER_ATTEMPTS = 5
LIST_PAGE_MAX = 100


class RosterChanged(Exception):
    """The agent kept changing while its status or profile was being written."""


class AgentChanged(Exception):
    """The agent's version moved on since it was read: read it again and decide again."""


def shard_of(agent_id: str) -> int:
    digest = hashlib.sha256(agent_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % settings().routing_shards


def _agent(item: dict[str, Any]) -> Agent:
    return Agent.model_validate(item)


def agent_item(agent: Agent) -> dict[str, Any]:
    return {**keys.agent_key(agent.id), "type": "agent", **agent.model_dump(mode="json")}


def get_agent(agent_id: str) -> Agent | None:
    if not AGENT_ID.match(agent_id):
        return None
    item = table.get(keys.agent_key(agent_id))
    return _agent(item) if item else None


def get_agents(agent_ids: list[str]) -> dict[str, Agent]:
    """Several agents by id: one BatchGetItem per 100."""
    wanted = [keys.agent_key(agent_id) for agent_id in agent_ids if AGENT_ID.match(agent_id)]
    return {agent.id: agent for agent in (_agent(item) for item in table.batch_get(wanted))}


def _cursor(agent_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": agent_id}).encode()).decode().rstrip("=")


class BadCursor(ValueError):
    """A list cursor this store did not hand out."""


def _after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = decoded["after"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc
    if not isinstance(after, str) or not AGENT_ID.match(after):
        raise BadCursor("cursor is not one this API returned")
    return after


def list_agents(limit: int = LIST_PAGE_MAX, cursor: str | None = None) -> tuple[list[Agent], str | None]:
    """A page of agents by id, and the cursor of the next page (None at the end): one Query of
    the directory and one BatchGetItem, whatever the number of agents."""
    limit = max(1, min(limit, LIST_PAGE_MAX))
    after = _after(cursor)
    start = {"pk": keys.AGENT_DIRECTORY, "sk": after} if after else None
    items, more = table.query_page(keys.AGENT_DIRECTORY, "", limit, start)
    ids = [str(item["sk"]) for item in items]
    found = get_agents(ids)
    agents = [found[agent_id] for agent_id in ids if agent_id in found]
    return agents, (_cursor(ids[-1]) if more and ids else None)


def all_agents() -> list[Agent]:
    """Every agent, page by page: for operators' tools and tests, never a request path."""
    agents: list[Agent] = []
    cursor: str | None = None
    while True:
        page, cursor = list_agents(LIST_PAGE_MAX, cursor)
        agents.extend(page)
        if cursor is None:
            return agents


# --- The availability index -------------------------------------------------------------------------


def available(channel: str, shard: int, limit: int, start_after: dict[str, str] | None) -> tuple[list[Agent], Any]:
    """One page of an index partition, best candidate first: the agents who can take a
    conversation on `channel` now (copies as of their last write), and where the next page starts."""
    items, more = table.query_page(keys.availability_partition(channel, shard), "", limit, start_after)
    next_start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]} if more and items else None
    return [_agent(item) for item in items], next_start


def _entry(agent: Agent, channel: str, rank: str) -> dict[str, Any]:
    item = agent_item(agent)
    return {**item, **keys.availability_key(channel, agent.index_shard, rank), "type": "availability"}


def _index_ops(before: Agent | None, after: Agent | None) -> list[dict[str, Any]]:
    was = (
        {
            channel: keys.availability_key(channel, before.index_shard, rank)
            for channel, rank in availability_ranks(before).items()
        }
        if before
        else {}
    )
    now = (
        {
            channel: (keys.availability_key(channel, after.index_shard, rank), rank)
            for channel, rank in availability_ranks(after).items()
        }
        if after
        else {}
    )
    ops: list[dict[str, Any]] = []
    kept = {(key["pk"], key["sk"]) for key, _ in now.values()}
    for key in was.values():
        if (key["pk"], key["sk"]) not in kept:
            ops.append(table.delete_op(key))
    for channel, (_, rank) in sorted(now.items()):
        assert after is not None
        ops.append(table.put_op(_entry(after, channel, rank), condition=None))
    return ops


# --- The live roster counts (analytics) -------------------------------------------------------------


def roster_key(shard: int, channel: str) -> dict[str, str]:
    return {"pk": f"AROSTER#{shard}", "sk": channel}


def _roster_shard(agent_id: str) -> int:
    digest = hashlib.sha256(agent_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % settings().analytics_shards


def _roster_ops(agent_id: str, before: Agent | None, after: Agent | None) -> list[dict[str, Any]]:
    """The live roster counts (available, away, offline per channel) move in the same transaction
    as the agent's status, so they are exact; spread over ANALYTICS_SHARDS partitions. Offers and
    releases do not move them (roster_counts counts status only)."""
    by_channel: dict[str, dict[str, int]] = {}
    for (channel, state), delta in roster_moves(before, after).items():
        by_channel.setdefault(channel, {})[state] = delta
    return [
        _count_op(roster_key(_roster_shard(agent_id), channel), deltas)
        for channel, deltas in sorted(by_channel.items())
    ]


def _count_op(key: dict[str, str], deltas: dict[str, int]) -> dict[str, Any]:
    """ADD each state's delta to one roster count item."""
    states = sorted(deltas)
    names = {f"#s{i}": state for i, state in enumerate(states)}
    values: dict[str, Any] = {f":s{i}": deltas[state] for i, state in enumerate(states)}
    expression = "ADD " + ", ".join(f"#s{i} :s{i}" for i in range(len(states)))
    return table.update_op(key, expression, names, values, None)


ROSTER_STATES = tuple(status.value for status in AgentStatus)


def roster(reads: Reads) -> dict[str, dict[str, int]]:
    """The live roster counts per channel (`all` too): available, away, offline. One Query
    per analytics shard, a handful of items each, whatever the number of agents."""
    counts: dict[str, dict[str, int]] = {}
    for shard in range(settings().analytics_shards):
        items, _ = table.query_page(f"AROSTER#{shard}", "", 100, None)
        reads.requests += 1
        reads.items += len(items)
        for item in items:
            into = counts.setdefault(str(item["sk"]), dict.fromkeys(ROSTER_STATES, 0))
            for state in ROSTER_STATES:
                into[state] += int(item.get(state, 0))
    return counts


# --- Writing an agent --------------------------------------------------------------------------------


def next_version(before: Agent | None, after: Agent) -> Agent:
    """`after` as it will be stored: the next version, in the shard the current setting gives."""
    return after.model_copy(
        update={"version": (before.version + 1) if before else 1, "index_shard": shard_of(after.id)}
    )


def change_ops(before: Agent | None, after: Agent | None) -> list[dict[str, Any]]:
    """The operations that move an agent from `before` (as read; None: new) to `after` (None:
    deleted), with its availability entries, directory entry and roster counts. `after` must
    come from `next_version`. The first operation is the agent's own, conditioned on its version."""
    agent_id = (after or before).id  # type: ignore[union-attr]
    if before is None:
        own = table.put_op(agent_item(after), condition="attribute_not_exists(pk)")  # type: ignore[arg-type]
    else:
        condition = "version = :v" if before.version else "attribute_not_exists(version) OR version = :v"
        values = {":v": before.version}
        if after is None:
            own = table.delete_op(keys.agent_key(agent_id), condition, values)
        else:
            own = table.put_op(agent_item(after), condition=condition, values=values)
    ops = [own]
    if before is None:
        ops.append(table.put_op({**keys.agent_directory_key(agent_id), "type": "agent_directory"}, condition=None))
    if after is None:
        ops.append(table.delete_op(keys.agent_directory_key(agent_id)))
    return ops + _index_ops(before, after) + _roster_ops(agent_id, before, after)


def _write(before: Agent | None, after: Agent | None) -> bool:
    """Write one agent change alone; False when the agent moved on since `before` was read."""
    try:
        table.transact(change_ops(before, after))
    except TransactionCancelled as exc:
        if exc.failed_at(0) or exc.conflicted:
            return False
        raise
    return True


def upsert_profile(agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
    """Create the agent (offline, nothing held) or change its profile; load and status are kept.
    GetItem, then one TransactWriteItems."""
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        if before is None:
            after = Agent(id=agent_id, **profile.model_dump(), status_changed_at=now, created_at=now, updated_at=now)
        else:
            after = before.model_copy(update={**profile.model_dump(), "updated_at": now})
        after = next_version(before, after)
        if _write(before, after):
            return after
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")


def set_status(agent_id: str, status: AgentStatus, now: datetime) -> Agent | None:
    """GetItem, then one TransactWriteItems; None if there is no such agent."""
    if not AGENT_ID.match(agent_id):
        return None
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        if before is None:
            return None
        after = next_version(
            before, before.model_copy(update={"status": status, "status_changed_at": now, "updated_at": now})
        )
        if _write(before, after):
            return after
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")


def import_agents(agents: list[Agent]) -> None:
    """Register many new agents at once (a contact centre's roster): each agent, its directory
    and availability entries in BatchWriteItem requests of 25, then the roster counts in one
    update per channel and shard. Not atomic and unconditional, so only for ids not in use
    (`upsert_profile` is the one-by-one, conditional way)."""
    items: list[dict[str, Any]] = []
    moves: dict[tuple[int, str, str], int] = {}
    for agent in agents:
        stored = next_version(None, agent)
        items.append(agent_item(stored))
        items.append({**keys.agent_directory_key(stored.id), "type": "agent_directory"})
        items.extend(_entry(stored, channel, rank) for channel, rank in availability_ranks(stored).items())
        for (channel, state), delta in roster_moves(None, stored).items():
            key = (_roster_shard(stored.id), channel, state)
            moves[key] = moves.get(key, 0) + delta
    table.batch_put(items)
    by_key: dict[tuple[int, str], dict[str, int]] = {}
    for (shard, channel, state), delta in moves.items():
        by_key.setdefault((shard, channel), {})[state] = delta
    ops = [_count_op(roster_key(shard, channel), deltas) for (shard, channel), deltas in sorted(by_key.items())]
    for start in range(0, len(ops), 100):
        table.transact(ops[start : start + 100])


def delete_idle_agent(agent_id: str) -> bool:
    """Delete an agent that holds nothing; False if it holds offers or conversations."""
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        if before is None:
            return True
        if before.total_load or before.offer_ids or before.conversation_ids:
            return False
        if _write(before, None):
            return True
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")
