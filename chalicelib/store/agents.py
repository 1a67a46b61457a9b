"""Agents: one partition, so listing them for a match is a single Query (no Scan)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from chalicelib.config import settings
from chalicelib.domain.agents import Agent, AgentProfile, AgentStatus, roster_moves
from chalicelib.store import keys, table
from chalicelib.store.analytics import Reads
from chalicelib.store.table import TransactionCancelled


def _agent(item: dict[str, Any]) -> Agent:
    return Agent.model_validate(item)


AGENT_ID = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def get_agent(agent_id: str) -> Agent | None:
    if not AGENT_ID.match(agent_id):
        return None
    item = table.get(keys.agent_key(agent_id))
    return _agent(item) if item else None


def list_agents() -> list[Agent]:
    agents: list[Agent] = []
    start: dict[str, str] | None = None
    while True:
        items, more = table.query_page(keys.AGENTS_PARTITION, "AGENT#", 500, start)
        agents.extend(_agent(item) for item in items)
        if not more or not items:
            return agents
        start = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}


ROSTER_ATTEMPTS = 5


class RosterChanged(Exception):
    """The agent kept changing while its status or profile was being written."""


def roster_key(shard: int, channel: str) -> dict[str, str]:
    return {"pk": f"AROSTER#{shard}", "sk": channel}


def _shard(agent_id: str) -> int:
    digest = hashlib.sha256(agent_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % settings().analytics_shards


def _roster_ops(agent_id: str, before: Agent | None, after: Agent | None) -> list[dict[str, Any]]:
    """The live roster counts (available, away, offline per channel) move in the same transaction
    as the agent, so they are exact; spread over ANALYTICS_SHARDS partitions by agent id."""
    by_channel: dict[str, dict[str, int]] = {}
    for (channel, status), delta in roster_moves(before, after).items():
        by_channel.setdefault(channel, {})[status] = delta
    ops = []
    for channel, deltas in sorted(by_channel.items()):
        names = {f"#s{i}": status for i, status in enumerate(sorted(deltas))}
        values: dict[str, Any] = {f":s{i}": deltas[status] for i, status in enumerate(sorted(deltas))}
        expression = "ADD " + ", ".join(f"#s{i} :s{i}" for i in range(len(deltas)))
        ops.append(table.update_op(roster_key(_shard(agent_id), channel), expression, names, values, None))
    return ops


def _unchanged(before: Agent | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    if before is None:
        return "attribute_not_exists(pk)", {}, {}
    return (
        "#status = :was_status AND updated_at = :was",
        {"#status": "status"},
        {
            ":was_status": before.status.value,
            ":was": before.updated_at.isoformat(),
        },
    )


def _write(agent_id: str, op: dict[str, Any], before: Agent | None, after: Agent | None) -> bool:
    """Write the agent change and its roster moves together; False when the agent moved on."""
    try:
        table.transact([op, *_roster_ops(agent_id, before, after)])
    except TransactionCancelled as exc:
        if exc.failed_at(0) or exc.conflicted:
            return False
        raise
    return True


def upsert_profile(agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
    """Create the agent (offline, nothing held) or change its profile; load and status are kept.
    GetItem, then one TransactWriteItems (the agent and the roster counts)."""
    data = profile.model_dump(mode="json")
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        condition, names, values = _unchanged(before)
        names = {**names, **{f"#{field}": field for field in data}, "#type": "type", "#id": "id"}
        values = {**values, **{f":{field}": value for field, value in data.items()}, ":now": now.isoformat()}
        values.update({":id": agent_id, ":type": "agent"})
        sets = [f"#{field} = :{field}" for field in data] + ["#id = :id", "#type = :type", "updated_at = :now"]
        if before is None:
            names.update({"#status": "status", "#load": "load"})
            values.update({":offline": AgentStatus.OFFLINE.value, ":empty": {}, ":zero": 0})
            sets += [
                "created_at = :now",
                "#status = :offline",
                "status_changed_at = :now",
                "#load = :empty",
                "total_load = :zero",
            ]
            after = Agent(id=agent_id, **profile.model_dump(), status_changed_at=now, created_at=now, updated_at=now)
        else:
            after = before.model_copy(update={**profile.model_dump(), "updated_at": now})
        op = table.update_op(keys.agent_key(agent_id), "SET " + ", ".join(sets), names, values, condition)
        if _write(agent_id, op, before, after):
            return after
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")


def set_status(agent_id: str, status: AgentStatus, now: datetime) -> Agent | None:
    """GetItem, then one TransactWriteItems (the agent and the roster counts); None if no agent."""
    if not AGENT_ID.match(agent_id):
        return None
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        if before is None:
            return None
        condition, names, values = _unchanged(before)
        op = table.update_op(
            keys.agent_key(agent_id),
            "SET #status = :status, status_changed_at = :now, updated_at = :now",
            names,
            {**values, ":status": status.value, ":now": now.isoformat()},
            condition,
        )
        after = before.model_copy(update={"status": status, "status_changed_at": now, "updated_at": now})
        if _write(agent_id, op, before, after):
            return get_agent(agent_id) or after
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")


def roster(reads: Reads) -> dict[str, dict[str, int]]:
    """The live roster counts per channel (`all` too): available, away, offline. One Query per
    shard, a handful of items each, whatever the number of agents."""
    counts: dict[str, dict[str, int]] = {}
    for shard in range(settings().analytics_shards):
        items, _ = table.query_page(f"AROSTER#{shard}", "", 100, None)
        reads.requests += 1
        reads.items += len(items)
        for item in items:
            into = counts.setdefault(str(item["sk"]), dict.fromkeys((s.value for s in AgentStatus), 0))
            for status in AgentStatus:
                into[status.value] += int(item.get(status.value, 0))
    return counts


def delete_idle_agent(agent_id: str) -> bool:
    """Delete an agent that holds nothing; False if it holds offers or conversations."""
    for _ in range(ROSTER_ATTEMPTS):
        before = get_agent(agent_id)
        if before is None:
            return True
        condition, names, values = _unchanged(before)
        op = {
            "Delete": {
                "TableName": table.table_name(),
                "Key": table.serialize(keys.agent_key(agent_id)),
                "ConditionExpression": f"{condition} AND total_load = :zero",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": table.serialize({**values, ":zero": 0}),
            }
        }
        if _write(agent_id, op, before, None):
            return True
        current = get_agent(agent_id)
        if current is not None and current.total_load:
            return False
    raise RosterChanged(f"agent '{agent_id}' kept changing; try again")
