"""Routing policy: which queue, priority and skills a conversation needs, which agent gets it,
which waiting task an agent gets next. Pure functions; the store enforces the invariants."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from chalicelib.domain.agents import Agent
from chalicelib.domain.default_texts import DEFAULT_ASSISTANT_TEXTS, DEFAULT_HANDOFF_KEYWORDS, DEFAULT_OUT_OF_HOURS
from chalicelib.domain.sla import SlaPolicy
from chalicelib.domain.surveys import SurveyConfig


class RuleMatch(BaseModel):
    channels: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)


class RoutingRule(BaseModel):
    """When a conversation matches `when` (every given condition), it needs `skills` and gets at
    least `priority`; the first matching rule that names a queue decides the queue."""

    name: str
    when: RuleMatch = Field(default_factory=RuleMatch)
    queue: str | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    skills: dict[str, int] = Field(default_factory=dict)


class QueueControl(BaseModel):
    """Who takes a queue's new conversations first: "humans", "assistant" (the built-in one), or
    an integration id; per channel where it differs."""

    default: str | None = None
    channels: dict[str, str] = Field(default_factory=dict)


class ControlConfig(BaseModel):
    default: str = "humans"
    queues: dict[str, QueueControl] = Field(default_factory=dict)

    def first_controller(self, queue: str, channel: str) -> str:
        chosen = self.queues.get(queue)
        if chosen is not None:
            return chosen.channels.get(channel) or chosen.default or self.default
        return self.default


class AutoReplies(BaseModel):
    """Texts per language ({next_opening} is the next opening in the customer's time zone)."""

    out_of_hours: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_OUT_OF_HOURS))
    # An acknowledgement of a new conversation during open hours; none unless configured.
    acknowledgement: dict[str, str] = Field(default_factory=dict)


class AssistantConfig(BaseModel):
    """The built-in assistant: when it hands a conversation to humans, and what it says."""

    handoff_keywords: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_HANDOFF_KEYWORDS))
    max_misses: int = Field(default=2, ge=1, le=10)  # messages it could not answer before a person takes over
    # Only these knowledge-base intents are answered; anything else goes to a person (None: all).
    intents: list[str] | None = None
    texts: dict[str, dict[str, str]] = Field(default_factory=lambda: dict(DEFAULT_ASSISTANT_TEXTS))
    default_language: str = "en"


class RoutingConfig(BaseModel):
    queues: list[str] = Field(default_factory=lambda: ["general"])
    default_queue: str = "general"
    default_priority: int = Field(default=5, ge=0, le=9)
    rules: list[RoutingRule] = Field(default_factory=list)
    offer_timeout_seconds: int = Field(default=60, ge=1, le=900)
    sticky_window_seconds: int = 24 * 3600
    sticky_wait_seconds: int = Field(default=30, ge=0, le=900)
    # After each wait (from enqueue), required skills loosen one step: levels to 1, then none.
    relax_after_seconds: list[int] = Field(default_factory=lambda: [120, 300])
    agent_grace_seconds: int = Field(default=120, ge=0, le=900)
    control: ControlConfig = Field(default_factory=ControlConfig)
    # Queue → business-hours schedule id (PUT /v1/business-hours/{id}); a queue without one is always open.
    schedules: dict[str, str] = Field(default_factory=dict)
    auto_replies: AutoReplies = Field(default_factory=AutoReplies)
    assistant: AssistantConfig = Field(default_factory=AssistantConfig)
    sla: list[SlaPolicy] = Field(default_factory=list)  # the first that applies to a queue and priority
    surveys: SurveyConfig = Field(default_factory=SurveyConfig)

    def all_queues(self) -> list[str]:
        named = [rule.queue for rule in self.rules if rule.queue]
        return list(dict.fromkeys([*self.queues, self.default_queue, *named]))


class TaskStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"


class Task(BaseModel):
    """A conversation waiting for an agent."""

    conversation_id: str
    customer_id: str
    channel: str
    queue: str
    priority: int
    skills: dict[str, int] = Field(default_factory=dict)
    enqueued_at: datetime
    enqueue_id: str  # sortable id minted at enqueue; keeps the task's place in line
    shard: int = 0  # which of the queue's partitions holds it (store/routing.task_shard)
    status: TaskStatus = TaskStatus.WAITING
    offer_id: str | None = None
    excluded_agents: list[str] = Field(default_factory=list)
    preferred_agent: str | None = None
    preferred_until: datetime | None = None
    reason: str = "inbound"
    version: int = 0

    @property
    def sort_key(self) -> str:
        """Higher priority first, then oldest first, as a string DynamoDB sorts ascending."""
        return f"{9 - self.priority}#{self.enqueue_id}"


class Classification(BaseModel):
    queue: str
    priority: int
    skills: dict[str, int]


def _matches(rule: RoutingRule, channel: str, attributes: dict[str, Any], text: str) -> bool:
    when = rule.when
    if when.channels and channel not in when.channels:
        return False
    for key, expected in when.attributes.items():
        actual = attributes.get(key)
        if isinstance(expected, list) and actual not in expected:
            return False
        if not isinstance(expected, list) and actual != expected:
            return False
    if when.keywords:
        words = text.lower()
        if not any(re.search(rf"\b{re.escape(keyword.lower())}\b", words) for keyword in when.keywords):
            return False
    return True


def classify(channel: str, attributes: dict[str, Any], text: str, config: RoutingConfig) -> Classification:
    queue: str | None = None
    priority = config.default_priority
    skills: dict[str, int] = {}
    for rule in config.rules:
        if not _matches(rule, channel, attributes, text):
            continue
        if queue is None and rule.queue:
            queue = rule.queue
        if rule.priority is not None:
            priority = max(priority, rule.priority)
        for skill, level in rule.skills.items():
            skills[skill] = max(level, skills.get(skill, 0))
    return Classification(queue=queue or config.default_queue, priority=priority, skills=skills)


def effective_skills(task: Task, now: datetime, config: RoutingConfig) -> dict[str, int]:
    """The skills a task requires now: its own, then any level, then none (skill relaxation)."""
    waited = (now - task.enqueued_at).total_seconds()
    steps = sum(1 for after in config.relax_after_seconds if waited >= after)
    if steps == 0:
        return dict(task.skills)
    if steps == 1:
        return {skill: 1 for skill in task.skills}
    return {}


def preferred_agent_now(task: Task, now: datetime) -> str | None:
    if task.preferred_agent and task.preferred_until and now < task.preferred_until:
        return task.preferred_agent
    return None


def eligible(agent: Agent, task: Task, now: datetime, config: RoutingConfig) -> bool:
    if agent.id in task.excluded_agents or not agent.can_take(task.channel):
        return False
    preferred = preferred_agent_now(task, now)
    if preferred is not None:
        return agent.id == preferred
    return agent.has_skills(effective_skills(task, now, config))


def choose_agent(task: Task, agents: list[Agent], now: datetime, config: RoutingConfig) -> list[Agent]:
    """Eligible agents, best first: most spare capacity on the channel, then idle longest."""
    candidates = [agent for agent in agents if eligible(agent, task, now, config)]
    return sorted(candidates, key=lambda agent: (-agent.spare(task.channel), agent.idle_since, agent.id))


def order_tasks(tasks: list[Task]) -> list[Task]:
    return sorted(tasks, key=lambda task: task.sort_key)


def choose_tasks(agent: Agent, tasks: list[Task], now: datetime, config: RoutingConfig) -> list[Task]:
    """Waiting tasks this agent may take, in the order they must be served."""
    return [
        task for task in order_tasks(tasks) if task.status is TaskStatus.WAITING and eligible(agent, task, now, config)
    ]


def next_recheck(task: Task, now: datetime, config: RoutingConfig) -> datetime | None:
    """When the task's eligibility next changes on its own (sticky wait ends, skills relax)."""
    moments = [task.enqueued_at + timedelta(seconds=after) for after in config.relax_after_seconds]
    if task.preferred_until:
        moments.append(task.preferred_until)
    future = [moment for moment in moments if moment > now]
    return min(future) if future else None
