"""Agents: one partition, so listing them for a match is a single Query (no Scan)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from chalicelib.domain.agents import Agent, AgentProfile, AgentStatus
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed


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


def upsert_profile(agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
    """Create the agent (offline, nothing held) or change its profile; load and status are kept."""
    data = profile.model_dump(mode="json")
    names = {f"#{field}": field for field in data}
    values: dict[str, Any] = {f":{field}": value for field, value in data.items()}
    sets = [f"#{field} = :{field}" for field in data]
    values.update({":now": now.isoformat(), ":offline": AgentStatus.OFFLINE.value, ":empty": {}, ":zero": 0})
    names.update({"#id": "id", "#status": "status", "#load": "load"})
    values[":id"] = agent_id
    sets += [
        "#id = :id",
        "updated_at = :now",
        "created_at = if_not_exists(created_at, :now)",
        "#status = if_not_exists(#status, :offline)",
        "status_changed_at = if_not_exists(status_changed_at, :now)",
        "#load = if_not_exists(#load, :empty)",
        "total_load = if_not_exists(total_load, :zero)",
        "#type = :type",
    ]
    names["#type"] = "type"
    values[":type"] = "agent"
    item = table.update(keys.agent_key(agent_id), "SET " + ", ".join(sets), names, values)
    return _agent(item)


def set_status(agent_id: str, status: AgentStatus, now: datetime) -> Agent | None:
    if not AGENT_ID.match(agent_id):
        return None
    try:
        item = table.update(
            keys.agent_key(agent_id),
            "SET #status = :status, status_changed_at = :now, updated_at = :now",
            {"#status": "status"},
            {":status": status.value, ":now": now.isoformat()},
            condition="attribute_exists(pk)",
        )
    except ConditionFailed:
        return None
    return _agent(item)


def delete_idle_agent(agent_id: str) -> bool:
    """Delete an agent that holds nothing; False if it holds offers or conversations."""
    try:
        table.client().delete_item(
            TableName=table.table_name(),
            Key=table.serialize(keys.agent_key(agent_id)),
            ConditionExpression="attribute_exists(pk) AND total_load = :zero",
            ExpressionAttributeValues=table.serialize({":zero": 0}),
        )
    except table.client().exceptions.ConditionalCheckFailedException:
        return False
    return True
