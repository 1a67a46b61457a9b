"""What each analytics metric means: the single source docs/metrics.md is checked against.

A test reads the table in docs/metrics.md and fails unless its rows are exactly these
definitions, so the page a support manager reads and the code that counts cannot drift apart.
Every figure of a cycle is reported in the hour the cycle started (its first customer message),
so a drill-down on any bar lists exactly the cycles that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    DURATION = "duration"  # seconds: count, mean, p50, p90, in calendar and in business time
    COUNT = "count"
    RATIO = "ratio"
    SCORE = "score"


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    kind: Kind
    unit: str
    start: str
    end: str
    excluded: str
    connect: str  # the nearest Amazon Connect metric
    zendesk: str  # the nearest Zendesk Explore metric


CYCLE_START = "the cycle's first customer message"

DEFINITIONS: tuple[MetricDefinition, ...] = (
    MetricDefinition(
        "cycles",
        Kind.COUNT,
        "cycles",
        CYCLE_START,
        "-",
        "messages the hub sent first (no customer message yet)",
        "Contacts created",
        "Conversations / Tickets created",
    ),
    MetricDefinition(
        "queued",
        Kind.COUNT,
        "cycles",
        "the cycle's first conversation.queued",
        "-",
        "cycles a bot or nobody kept to the end",
        "Contacts queued",
        "Tickets assigned to a group",
    ),
    MetricDefinition(
        "first_response",
        Kind.DURATION,
        "seconds",
        CYCLE_START,
        "the first message an agent sent in the cycle",
        "bot, automatic and system messages; cycles with no agent message",
        "Average agent first response time",
        "First reply time",
    ),
    MetricDefinition(
        "first_bot_response",
        Kind.DURATION,
        "seconds",
        CYCLE_START,
        "the first message a bot (the assistant or a bot integration) sent in the cycle",
        "agent, automatic and system messages",
        "Average bot conversation time (nearest)",
        "First reply time (bot)",
    ),
    MetricDefinition(
        "next_reply",
        Kind.DURATION,
        "seconds",
        "the oldest customer message not yet answered by an agent, after the cycle's first agent message",
        "the next message an agent sent",
        "the wait the first response measures; bot, automatic and system messages",
        "Average agent response time",
        "Next reply time",
    ),
    MetricDefinition(
        "queue_wait",
        Kind.DURATION,
        "seconds",
        "conversation.queued or conversation.transferred (each wait in line)",
        "the next offer.accepted",
        "waits that ended without an accepted offer (resolved in line)",
        "Average queue answer time",
        "First assignment time",
    ),
    MetricDefinition(
        "handle_time",
        Kind.DURATION,
        "seconds",
        "the cycle's first offer.accepted",
        "conversation.resolved",
        "cycles no agent accepted",
        "Average handle time",
        "Handling time",
    ),
    MetricDefinition(
        "resolution_time",
        Kind.DURATION,
        "seconds",
        CYCLE_START,
        "conversation.resolved",
        "cycles not resolved yet",
        "Average resolution time",
        "Full resolution time",
    ),
    MetricDefinition(
        "resolved",
        Kind.COUNT,
        "cycles",
        CYCLE_START,
        "conversation.resolved",
        "-",
        "Contacts handled",
        "Solved tickets",
    ),
    MetricDefinition(
        "resolved_without_human",
        Kind.COUNT,
        "cycles",
        CYCLE_START,
        "conversation.resolved with no agent message or accepted offer in the cycle, a bot involved",
        "cycles resolved by an agent, or with no bot involved",
        "Bot conversations completed",
        "Automated resolutions",
    ),
    MetricDefinition(
        "offers_created",
        Kind.COUNT,
        "offers",
        "offer.created",
        "-",
        "-",
        "Contacts offered (nearest: Agent answer rate's denominator)",
        "Assignments",
    ),
    MetricDefinition(
        "offers_accepted",
        Kind.COUNT,
        "offers",
        "offer.accepted",
        "-",
        "-",
        "Contacts handled (agent connected)",
        "Assignments accepted",
    ),
    MetricDefinition(
        "offers_rejected",
        Kind.COUNT,
        "offers",
        "offer.rejected",
        "-",
        "-",
        "Contacts rejected",
        "Declined assignments",
    ),
    MetricDefinition(
        "offers_expired",
        Kind.COUNT,
        "offers",
        "offer.expired",
        "-",
        "offers rescinded because the agent went offline or the cycle was resolved",
        "Agent non-response",
        "Missed assignments",
    ),
    MetricDefinition(
        "transfers",
        Kind.COUNT,
        "transfers",
        "conversation.transferred",
        "-",
        "re-queues when an agent went offline",
        "Contacts transferred out",
        "Reassignments",
    ),
    MetricDefinition(
        "channel_switches",
        Kind.COUNT,
        "switches, by from → to channel",
        "conversation.channel_linked through a handoff link code",
        "-",
        "identities linked by phone verification (no link followed)",
        "- (none)",
        "- (none)",
    ),
    MetricDefinition(
        "service_level",
        Kind.RATIO,
        "share of queued cycles, 0 to 1",
        CYCLE_START,
        "the first message an agent sent, within the query's service_level seconds",
        "cycles never queued for humans",
        "Service level X",
        "SLA achievement rate (first reply time target)",
    ),
    MetricDefinition(
        "sla_met",
        Kind.COUNT,
        "cycles",
        "the cycle's SLA clocks started",
        "conversation.resolved with no clock missed",
        "cycles with no SLA policy",
        "- (Service level X is the nearest)",
        "SLA achieved tickets",
    ),
    MetricDefinition(
        "sla_missed",
        Kind.COUNT,
        "cycles",
        "the cycle's SLA clocks started",
        "the cycle's first sla.breached",
        "cycles with no SLA policy",
        "- (Service level X is the nearest)",
        "SLA breached tickets",
    ),
    MetricDefinition(
        "csat_sent",
        Kind.COUNT,
        "surveys",
        "csat.requested",
        "-",
        "cycles a bot alone resolved, short cycles, the cooldown, opted-out channels, queues without surveys",
        "- (Contact Lens post-contact survey)",
        "Surveys offered",
    ),
    MetricDefinition(
        "csat_score",
        Kind.SCORE,
        "share of ratings 4 or 5, 0 to 1; also the mean rating 1 to 5",
        "csat.requested",
        "csat.submitted (the latest rating of the survey)",
        "surveys not answered",
        "Average evaluation score (nearest)",
        "Satisfaction score",
    ),
    MetricDefinition(
        "csat_response_rate",
        Kind.RATIO,
        "share of surveys answered, 0 to 1",
        "csat.requested",
        "csat.submitted",
        "-",
        "- (none)",
        "Response rate",
    ),
)

BY_NAME = {definition.name: definition for definition in DEFINITIONS}
DURATIONS = tuple(definition.name for definition in DEFINITIONS if definition.kind is Kind.DURATION)
