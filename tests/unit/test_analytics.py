"""Analytics as pure code: docs/metrics.md and the code's definitions are one table; histograms
bound their percentile error; the fold counts each event once, starts a new cycle on a reopen,
credits a rating to the agents of the survey, and keeps a rating or comment out of the cycles."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import histogram
from chalicelib.domain.analytics import CycleState, Folded, Phase, fold, fold_survey
from chalicelib.domain.events import new_event
from chalicelib.domain.metric_definitions import DEFINITIONS, DURATIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CONVERSATION = "con_01"


def calendar(queue: str, start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def inbound(message_id: str, seconds: float, **extra: Any) -> Any:
    message = {
        "id": message_id,
        "conversation_id": CONVERSATION,
        "customer_id": "cus_1",
        "channel": "sms",
        "direction": "inbound",
        "created_at": at(seconds),
    }
    return new_event("message.created", {"message": message, "queue": "general", **extra}, message_id)


def outbound(message_id: str, seconds: float, sent_by: str, agent: str | None = None) -> Any:
    message = {
        "id": message_id,
        "conversation_id": CONVERSATION,
        "channel": "sms",
        "direction": "outbound",
        "created_at": at(seconds),
        "sent_by": sent_by,
        "agent_id": agent,
    }
    return new_event("message.created", {"message": message}, message_id)


def offer(kind: str, seconds: float, agent: str = "ada", key: str = "ofr_1") -> Any:
    body = {"id": key, "agent_id": agent, "conversation_id": CONVERSATION, "decided_at": at(seconds)}
    return new_event(f"offer.{kind}", {"offer": body}, key, T0 + timedelta(seconds=seconds))


def queued(seconds: float, key: str = "q1", event: str = "conversation.queued") -> Any:
    data = {"conversation": {"id": CONVERSATION}, "task": {"queue": "general", "enqueued_at": at(seconds)}}
    return new_event(event, {**data, "from_agent_id": "ada"}, key, T0 + timedelta(seconds=seconds))


def resolved(seconds: float) -> Any:
    data = {"conversation": {"id": CONVERSATION}, "agent_id": None}
    return new_event("conversation.resolved", data, f"r{seconds}", T0 + timedelta(seconds=seconds))


def run(events: list[Any], state: CycleState | None = None) -> tuple[CycleState | None, dict[str, float]]:
    counts: dict[str, float] = {}
    for event in events:
        folded: Folded = fold(state, event, calendar)
        state = folded.state
        for increment in folded.increments:
            counts[increment.counter] = counts.get(increment.counter, 0) + increment.amount
    return state, counts


# --- The definitions ------------------------------------------------------------------------------


def docs_rows() -> list[list[str]]:
    rows = []
    for line in DOCS.read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            cells[0] = cells[0].strip("`")
            rows.append(cells)
    return rows


def test_docs_metrics_md_holds_exactly_the_definitions_the_code_computes() -> None:
    expected = [[d.name, d.kind.value, d.unit, d.start, d.end, d.excluded, d.connect, d.zendesk] for d in DEFINITIONS]
    assert docs_rows() == expected, "regenerate the table in docs/metrics.md from metric_definitions.py"
    bound = re.search(r"at most (\d+)% off", DOCS.read_text())
    assert bound and int(bound.group(1)) == round(histogram.MAX_RELATIVE_ERROR * 100)


def test_every_defined_metric_is_a_figure_of_the_summary() -> None:
    from chalicelib.services.analytics import metrics

    figures = metrics({}, 60)
    for definition in DEFINITIONS:
        name = definition.name
        if name.startswith("offers_"):
            assert name.removeprefix("offers_") in figures["offers"]
        elif name.startswith("sla_"):
            assert name.removeprefix("sla_") in figures["sla"]
        elif name.startswith("csat_"):
            assert {"csat_sent": "sent", "csat_score": "score", "csat_response_rate": "response_rate"}[name] in figures[
                "csat"
            ]
        else:
            assert name in figures, name
    for name in DURATIONS:
        assert set(figures[name]) == {"count", "mean", "p50", "p90", "business"}


# --- Histograms -------------------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=60 * 86400, allow_nan=False))
def test_a_duration_falls_in_the_bucket_that_holds_it(seconds: float) -> None:
    index = histogram.bucket_of(seconds)
    assert histogram.lower_bound(index) <= seconds < histogram.upper_bound(index)


@given(st.lists(st.floats(min_value=1, max_value=30 * 86400, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_within_one_bucket_of_the_truth(values: list[float]) -> None:
    buckets: dict[int, int] = {}
    for value in values:
        buckets[histogram.bucket_of(value)] = buckets.get(histogram.bucket_of(value), 0) + 1
    ordered = sorted(values)
    for q in (0.5, 0.9):
        truth = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        estimate = histogram.quantile(buckets, q)
        assert estimate is not None
        assert abs(estimate - truth) <= truth * histogram.MAX_RELATIVE_ERROR + 1e-9


def test_service_level_counts_durations_at_most_the_threshold() -> None:
    buckets = {histogram.bucket_of(value): 1 for value in (10, 100, 1000)}
    assert histogram.at_most(buckets, histogram.upper_bound(histogram.bucket_of(100))) == 2
    assert histogram.at_most(buckets, 5) == 0


# --- The fold ---------------------------------------------------------------------------------------------


def test_a_cycle_with_a_bot_handoff_an_agent_and_a_retry_counts_each_thing_once() -> None:
    events = [
        inbound("msg_01A", 0),
        outbound("msg_01B", 5, "bot"),
        outbound("msg_01C", 6, "system"),
        queued(60),
        offer("created", 60),
        offer("accepted", 90),
        outbound("msg_01D", 200, "agent", "ada"),
        inbound("msg_01E", 300),
        outbound("msg_01F", 420, "agent", "ada"),
        resolved(600),
    ]
    state, counts = run([*events, events[6], events[-1]])  # two retried events
    assert state is not None and state.phase is Phase.RESOLVED and state.resolved_by == "agent"
    assert counts["n:cycles"] == 1 and counts["n:queued"] == 1
    assert (counts["d:first_response:n"], counts["d:first_response:s"]) == (1, 200)
    assert (counts["d:first_bot_response:n"], counts["d:first_bot_response:s"]) == (1, 5)
    assert (counts["d:next_reply:n"], counts["d:next_reply:s"]) == (1, 120)
    assert (counts["d:queue_wait:s"], counts["d:handle_time:s"], counts["d:resolution_time:s"]) == (30, 510, 600)
    assert "n:resolved_without_human" not in counts
    assert (state.automatic_messages, state.bot_messages, state.agent_messages) == (1, 1, 2)
    assert state.credited_agents == ["ada"]


def test_a_customer_message_after_the_resolution_is_a_new_cycle_with_its_own_id() -> None:
    first, _ = run([inbound("msg_01A", 0), resolved(100)])
    second, counts = run([inbound("msg_01Z", 500)], first)
    assert first is not None and second is not None
    assert second.cycle_id != first.cycle_id and second.open and counts == {"n:cycles": 1}
    again, replayed = run([resolved(100)], second)
    assert again == second and replayed == {}, "a late retry of the old cycle's resolution changes nothing"


def test_a_bot_alone_resolves_without_a_human_and_a_survey_answer_is_no_cycle() -> None:
    control = new_event(
        "conversation.control_changed", {"conversation": {"id": CONVERSATION}, "controller": {"kind": "bot"}}, "c1"
    )
    state, counts = run([inbound("msg_01A", 0), control, outbound("msg_01B", 1, "bot"), resolved(50)])
    assert state is not None and state.resolved_by == "bot" and counts["n:resolved_without_human"] == 1
    after, answer = run([inbound("msg_01C", 80, survey_answer=True)], state)
    assert after == state and answer == {}, "a rating neither reopens nor counts"


def test_a_rating_is_credited_to_the_survey_agents_and_a_change_moves_the_count() -> None:
    state, _ = run(
        [inbound("msg_01A", 0), queued(1), offer("accepted", 2), outbound("msg_01B", 3, "agent", "ada"), resolved(9)]
    )
    assert state is not None
    survey = {"id": "srv_1", "cycle_id": state.cycle_id, "agent_ids": ["ada"], "channel": "sms", "sent_at": at(20)}
    requested = fold_survey(state, new_event("csat.requested", {"survey": survey}, "srv_1"))
    assert [(i.counter, i.agents) for i in requested.increments] == [("n:csat_sent", ("ada",))]
    assert requested.state is not None
    moved = requested.state.model_copy(update={"agent_id": "bob", "agents": ["ada", "bob"]})  # reassigned meanwhile
    rated = fold_survey(moved, new_event("csat.submitted", {"survey": {**survey, "rating": 2}}, "srv_1:2"))
    assert rated.state is not None
    changed = fold_survey(
        rated.state, new_event("csat.submitted", {"survey": {**survey, "rating": 5, "comment": "ok"}}, "srv_1:5")
    )
    counted: dict[str, float] = {}
    for increment in rated.increments + changed.increments:
        assert increment.agents == ("ada",), "credited to the agent of the survey, never to the later one"
        counted[increment.counter] = counted.get(increment.counter, 0) + increment.amount
    assert counted == {"n:csat_responses": 1, "n:csat_r2": 0, "n:csat_r5": 1, "n:csat_sum": 5}
    assert changed.state is not None and changed.state.csat is not None and changed.state.csat.comment == "ok"


def test_transfers_and_sla_breaches_are_counted_once_per_cycle() -> None:
    breach = new_event("sla.breached", {"conversation": {"id": CONVERSATION}, "target": "first_response"}, "b1")
    breach_again = new_event("sla.breached", {"conversation": {"id": CONVERSATION}, "target": "resolution"}, "b2")
    events = [
        inbound("msg_01A", 0),
        queued(1),
        offer("accepted", 2),
        queued(30, key="t1", event="conversation.transferred"),
        offer("accepted", 40, agent="bob", key="ofr_2"),
        breach,
        breach_again,
        resolved(100),
    ]
    state, counts = run(events)
    assert state is not None and state.agents == ["ada", "bob"] and state.transfers == 1
    assert counts["n:transfers"] == 1 and counts["d:queue_wait:n"] == 2 and counts["d:queue_wait:s"] == 11
    assert counts["n:sla_missed"] == 1 and "n:sla_met" not in counts
    assert counts["d:handle_time:s"] == 98, "from the first acceptance"
