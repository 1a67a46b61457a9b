"""Agent profiles behind the REST API (status changes live in services/routing.py)."""

from __future__ import annotations

from chalicelib.domain.agents import Agent, AgentProfile
from chalicelib.domain.messages import utcnow
from chalicelib.services.errors import Conflict, InvalidRequest, NotFound
from chalicelib.store import agents as agent_store


def _checked(agent_id: str) -> str:
    if not agent_store.AGENT_ID.match(agent_id):
        raise InvalidRequest("agent ids are 1 to 64 letters, digits, '.', '_', '@' or '-'")
    return agent_id


def put_agent(agent_id: str, profile: AgentProfile) -> tuple[Agent, bool]:
    """Create or update; True when created. A routing match follows if capacity grew."""
    existed = agent_store.get_agent(_checked(agent_id)) is not None
    try:
        agent = agent_store.upsert_profile(agent_id, profile, utcnow())
    except agent_store.RosterChanged as exc:
        raise Conflict(str(exc)) from None
    if existed:
        from chalicelib.services.routing import request_agent_match

        request_agent_match(agent_id)
    return agent, not existed


def get_agent(agent_id: str) -> Agent:
    agent = agent_store.get_agent(_checked(agent_id))
    if agent is None:
        raise NotFound(f"no agent '{agent_id}'")
    return agent


def list_agents(limit: int, cursor: str | None = None) -> tuple[list[Agent], str | None]:
    """A page of agents in id order, and the cursor of the next page (None after the last)."""
    try:
        return agent_store.list_agents(limit, cursor)
    except agent_store.BadCursor:
        raise InvalidRequest("'cursor' is not one this API returned") from None


def delete_agent(agent_id: str) -> None:
    get_agent(agent_id)
    try:
        deleted = agent_store.delete_idle_agent(agent_id)
    except agent_store.RosterChanged as exc:
        raise Conflict(str(exc)) from None
    if not deleted:
        raise Conflict(
            f"agent '{agent_id}' still holds offers or conversations; set it offline and let them be re-queued first"
        )
