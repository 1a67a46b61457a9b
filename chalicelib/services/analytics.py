"""Analytics: every event the hub raises is counted here in the same flow (services/events.py
calls `count`), and the REST API reads the counts back.

Counting (per conversation in a batch of events): GetItem the conversation's current cycle, fold
the events (domain/analytics.py), then one TransactWriteItems (head, row, hourly counts, gauges).
So an event costs at most 2 AWS requests, plus one GetItem for a queue's business-hours schedule
when the event completes a duration (each schedule read once per batch), plus one GetItem of an
earlier cycle's row for a survey answered after the customer wrote again. Events the fold does
not read cost nothing. A lost race (another worker folded the same conversation) reads again.

Reading (`summary`): whole days of the period in ANALYTICS_TIMEZONE (when the summary is in that
zone and not by hour) come from daily items, one Query per (year, shard); the rest (a period's
partial first and last days, hours, other zones) from hourly items, one Query per (UTC month,
shard); pages are 1 MB. So a summary's cost grows with the days in its range (at most one item
per day, shard and group), never with the number of conversations or messages. A 90-day
`group_by=day` summary in ANALYTICS_TIMEZONE with the default 4 shards reads at most
(90 + 2 x 24) x 4 = 552 items in 4 to 12 Queries; bench/analytics.py measures it.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.config import settings
from chalicelib.domain import histogram
from chalicelib.domain.analytics import (
    FOLDED_EVENTS,
    NO_QUEUE,
    SURVEY_EVENTS,
    CycleState,
    Folded,
    Increment,
    fold,
    fold_survey,
    gauge_moves,
)
from chalicelib.domain.business_hours import Schedule, open_seconds
from chalicelib.domain.events import CrmEvent
from chalicelib.domain.ids import id_floor, ulid_time_ms
from chalicelib.domain.messages import utcnow
from chalicelib.domain.metric_definitions import DURATIONS
from chalicelib.observability import logger
from chalicelib.services import business_hours
from chalicelib.services.errors import InvalidRequest
from chalicelib.services.routing_config import routing_config
from chalicelib.store import agents as agent_store
from chalicelib.store import analytics as store
from chalicelib.store.analytics import Reads

FOLD_ATTEMPTS = 6
MAX_RANGE_DAYS = 400
MAX_CYCLE_PAGE = 200
MAX_CSV_ROWS = 5000
MAX_ITEMS_PER_CYCLES_CALL = 5000
MAX_QUERIES_PER_CYCLES_CALL = 200  # an empty year is 1,460 partitions: a call stops and hands back a cursor


# --- Counting ------------------------------------------------------------------------------------


def _conversation_of(event: CrmEvent) -> str | None:
    data = event.data
    for holder in (data.get("survey"), data.get("message"), data.get("offer")):
        if isinstance(holder, dict) and holder.get("conversation_id"):
            return str(holder["conversation_id"])
    conversation = data.get("conversation")
    if isinstance(conversation, dict) and conversation.get("id"):
        return str(conversation["id"])
    value = data.get("conversation_id")
    return str(value) if value else None


class _BusinessClock:
    """Business seconds for a queue's schedule, each schedule read once per batch."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule | None] = {}

    def __call__(self, queue: str, start: datetime, end: datetime) -> float:
        schedule_id = routing_config().schedules.get(queue)
        if not schedule_id:
            return max(0.0, (end - start).total_seconds())
        if schedule_id not in self._schedules:
            self._schedules[schedule_id] = business_hours.load_schedule(schedule_id)
        schedule = self._schedules[schedule_id]
        if schedule is None:
            return max(0.0, (end - start).total_seconds())
        return open_seconds(schedule, start, end)


def count(events: Iterable[CrmEvent], heads: Mapping[str, CycleState | None] | None = None) -> None:
    """Count events for analytics, exactly once each (a retried event is recognised and skipped).
    `heads`: cycle heads the caller read already (conversation id → head, None for none), which
    saves the GetItem; a stale one only costs a retry. Raises on a storage failure, so the
    caller's retry counts what is missing."""
    by_conversation: dict[str, list[CrmEvent]] = defaultdict(list)
    for event in events:
        if event.type not in FOLDED_EVENTS:
            continue  # nothing analytics reads: no request at all
        conversation_id = _conversation_of(event)
        if conversation_id:
            by_conversation[conversation_id].append(event)
    clock = _BusinessClock()
    for conversation_id, batch in by_conversation.items():
        current = [event for event in batch if event.type not in SURVEY_EVENTS]
        if current:
            known = heads is not None and conversation_id in heads
            _fold_current(conversation_id, current, clock, heads[conversation_id] if known else NOT_READ)
        for event in batch:
            if event.type in SURVEY_EVENTS:
                _fold_survey(conversation_id, event)


NOT_READ: Any = object()


def _fold_current(conversation_id: str, events: list[CrmEvent], clock: _BusinessClock, known: Any = NOT_READ) -> None:
    for attempt in range(FOLD_ATTEMPTS):
        head = known if attempt == 0 and known is not NOT_READ else store.get_head(conversation_id)
        version = head.version if head else 0
        state, increments, changed = head, [], False
        closed: list[tuple[CycleState, list[Increment]]] = []
        for event in events:
            folded = fold(state, event, clock)
            if not folded.changed:
                continue
            if state is not None and folded.state is not None and folded.state.cycle_id != state.cycle_id:
                # A new cycle began: the finished one keeps its row as it was last written.
                closed.append((state, increments))
                increments = []
            state, changed = folded.state, True
            increments += folded.increments
        if not changed or state is None:
            return
        moves = gauge_moves(head, state)
        try:
            store.save(state, version, increments, moves, finished=closed)
            return
        except store.Changed:
            continue
    logger.warning("analytics not counted: too many concurrent changes", extra={"conversation_id": conversation_id})
    raise store.Changed()


def _fold_survey(conversation_id: str, event: CrmEvent) -> None:
    survey = event.data.get("survey") or {}
    cycle_id = str(survey.get("cycle_id") or "")
    if not cycle_id.startswith("cyc_"):
        return
    started = datetime.fromtimestamp(ulid_time_ms(cycle_id[4:14]) / 1000, UTC)
    for _ in range(FOLD_ATTEMPTS):
        head = store.get_head(conversation_id)
        current = head is not None and head.cycle_id == cycle_id
        state = head if current else store.get_row(conversation_id, cycle_id, started)
        if state is None:
            logger.info("survey event for an unknown cycle", extra={"cycle_id": cycle_id})
            return
        folded: Folded = fold_survey(state, event)
        if not folded.changed or folded.state is None:
            return
        try:
            store.save(folded.state, state.version, folded.increments, {}, head=current)
            return
        except store.Changed:
            continue
    raise store.Changed()


def current_cycle(conversation_id: str) -> CycleState | None:
    """The conversation's latest cycle as analytics holds it (one GetItem)."""
    return store.get_head(conversation_id)


# --- Periods -----------------------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo((name or "UTC").strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidRequest(
            f"tz: unknown time zone {str(name)[:64]!r}; give an IANA name such as 'Europe/Istanbul'"
        ) from None


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _instant(value: str | None, zone: ZoneInfo, name: str, default: datetime) -> datetime:
    if value is None or not str(value).strip():
        return default
    text = str(value).strip().replace(" ", "+")
    try:
        if _DATE.match(text):
            return datetime.combine(date.fromisoformat(text), time(), zone).astimezone(UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name}: give a date (2026-12-01) or an ISO 8601 instant (2026-12-01T09:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def period(
    start: str | None, end: str | None, tz: str | None, *, default_days: int = 7
) -> tuple[datetime, datetime, ZoneInfo]:
    """[from, to) in UTC; a date means its midnight in `tz`; `to` defaults to now, `from` to a week before."""
    zone = _zone(tz)
    now = utcnow()
    finish = _instant(end, zone, "to", now)
    begin = _instant(start, zone, "from", finish - timedelta(days=default_days))
    if finish <= begin:
        raise InvalidRequest("from must be before to")
    if finish - begin > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidRequest(f"a period is at most {MAX_RANGE_DAYS} days")
    return begin, finish, zone


def _hours(begin: datetime, finish: datetime) -> tuple[list[str], str, str]:
    first = begin.replace(minute=0, second=0, microsecond=0)
    last = (finish - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
    months: list[str] = []
    cursor = first.replace(day=1)
    while cursor <= last:
        months.append(f"{cursor:%Y-%m}")
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months, store.hour_of(first), store.hour_of(last)


# --- Summary --------------------------------------------------------------------------------------------

DIMENSION_GROUPS = ("channel", "queue", "agent")
TIME_GROUPS = ("day", "hour", "weekday_hour", "weekday")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _grouping(group_by: str | None) -> tuple[str | None, str | None]:
    parts = [part.strip() for part in (group_by or "").split(",") if part.strip()]
    dimension = [part for part in parts if part in DIMENSION_GROUPS]
    timing = [part for part in parts if part in TIME_GROUPS]
    unknown = [part for part in parts if part not in DIMENSION_GROUPS + TIME_GROUPS]
    if unknown or len(dimension) > 1 or len(timing) > 1:
        raise InvalidRequest(
            "group_by: one of channel, queue, agent and/or one of day, hour, weekday, weekday_hour "
            "(comma-separated, e.g. 'day,channel')"
        )
    return (dimension[0] if dimension else None), (timing[0] if timing else None)


def _time_key(hour: str, zone: ZoneInfo, timing: str) -> str:
    local = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC).astimezone(zone)
    if timing == "day":
        return f"{local:%Y-%m-%d}"
    if timing == "hour":
        return f"{local:%Y-%m-%dT%H}"
    if timing == "weekday":
        return WEEKDAYS[local.weekday()]
    return f"{WEEKDAYS[local.weekday()]}T{local:%H}"


COUNTERS = ("cycles", "queued", "resolved", "resolved_without_human", "transfers", "sla_met", "sla_missed")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _duration(counters: dict[str, float], prefix: str, metric: str) -> dict[str, Any]:
    n = int(counters.get(f"{prefix}:{metric}:n", 0))
    total = counters.get(f"{prefix}:{metric}:s", 0.0)
    buckets = {
        int(name.rsplit(":h", 1)[1]): int(value)
        for name, value in counters.items()
        if name.startswith(f"{prefix}:{metric}:h")
    }
    p50, p90 = histogram.quantile(buckets, 0.5), histogram.quantile(buckets, 0.9)
    return {
        "count": n,
        "mean": round(total / n, 1) if n else None,
        "p50": round(p50, 1) if p50 is not None else None,
        "p90": round(p90, 1) if p90 is not None else None,
    }


def metrics(counters: dict[str, float], service_level: float) -> dict[str, Any]:
    """The figures of docs/metrics.md from one group's summed counters."""
    figures: dict[str, Any] = {name: int(counters.get(f"n:{name}", 0)) for name in COUNTERS}
    for name in DURATIONS:
        figures[name] = {**_duration(counters, "d", name), "business": _duration(counters, "b", name)}
    figures["offers"] = {
        outcome: int(counters.get(f"n:offers_{outcome}", 0))
        for outcome in ("created", "accepted", "rejected", "expired")
    }
    buckets = {
        int(name.rsplit(":h", 1)[1]): int(value)
        for name, value in counters.items()
        if name.startswith("d:first_response:h")
    }
    queued = figures["queued"]
    within = histogram.at_most(buckets, service_level)
    figures["service_level"] = {
        "threshold_seconds": service_level,
        "answered_within": round(within, 1),
        "of": queued,
        "ratio": round(min(1.0, within / queued), 4) if queued else None,
    }
    figures["sla"] = {"met": figures.pop("sla_met"), "missed": figures.pop("sla_missed")}
    sent = int(counters.get("n:csat_sent", 0))
    responses = int(counters.get("n:csat_responses", 0))
    distribution = {str(rating): int(counters.get(f"n:csat_r{rating}", 0)) for rating in range(1, 6)}
    rated = sum(distribution.values())
    figures["csat"] = {
        "sent": sent,
        "responses": responses,
        "response_rate": round(responses / sent, 4) if sent else None,
        "distribution": distribution,
        "mean": round(counters.get("n:csat_sum", 0.0) / rated, 2) if rated else None,
        "score": round((distribution["4"] + distribution["5"]) / rated, 4) if rated else None,
    }
    figures["channel_switches"] = sorted(
        (
            {"from": name.split(":")[1], "to": name.split(":")[2], "count": int(value)}
            for name, value in counters.items()
            if name.startswith("x:") and name.count(":") == 2 and value
        ),
        key=lambda switch: (-switch["count"], switch["from"], switch["to"]),
    )
    return figures


def _counters(item: dict[str, Any]) -> dict[str, float]:
    return {name: _number(value) for name, value in item.items() if name[:2] in ("n:", "d:", "b:", "x:")}


def _add(into: dict[str, float], counters: dict[str, float]) -> None:
    for name, value in counters.items():
        into[name] = into.get(name, 0.0) + value


def _local_midnight(moment: datetime, zone: ZoneInfo, *, after: bool) -> datetime:
    local = moment.astimezone(zone)
    midnight = datetime.combine(local.date(), time(), zone)
    if after and midnight < local:
        midnight = datetime.combine(local.date() + timedelta(days=1), time(), zone)
    return midnight.astimezone(UTC)


def _counted(
    dimension: str, begin: datetime, finish: datetime, zone: ZoneInfo, timing: str | None, reads: Reads
) -> list[tuple[str, str, dict[str, float]]]:
    """(time key, dimension value, counters) of every counted item in [begin, finish): daily items
    for the whole days when the summary is in ANALYTICS_TIMEZONE and not by hour, hourly items
    for the rest."""
    found: list[tuple[str, str, dict[str, float]]] = []

    def hourly(low: datetime, high: datetime) -> None:
        if high <= low:
            return
        months, first_hour, last_hour = _hours(low, high)
        for item in store.stats(dimension, months, first_hour, last_hour, reads):
            hour, _, value = str(item["sk"]).partition("#")
            if first_hour <= hour <= last_hour:
                found.append((_time_key(hour, zone, timing) if timing else "", value, _counters(item)))

    daily = timing in (None, "day", "weekday") and zone.key == store.reporting_zone().key
    first_full = _local_midnight(begin, zone, after=True)
    last_full = _local_midnight(finish, zone, after=False)
    if not daily or first_full >= last_full:
        hourly(begin, finish)
        return found
    hourly(begin, first_full)
    first_day = first_full.astimezone(zone).date()
    last_day = last_full.astimezone(zone).date() - timedelta(days=1)
    for item in store.daily_stats(dimension, first_day, last_day, reads):
        day, _, value = str(item["sk"]).partition("#")
        key = "" if not timing else day if timing == "day" else WEEKDAYS[date.fromisoformat(day).weekday()]
        found.append((key, value, _counters(item)))
    hourly(last_full, finish)
    return found


def summary(
    start: str | None,
    end: str | None,
    tz: str | None,
    group_by: str | None,
    service_level: str | None,
) -> dict[str, Any]:
    """The figures of docs/metrics.md for [from, to), per group. Cost: see the module docstring."""
    begin, finish, zone = period(start, end, tz)
    dimension, timing = _grouping(group_by)
    threshold = _threshold(service_level)
    reads = Reads()
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    total: dict[str, float] = {}
    for time_key, value, counters in _counted(dimension or "all", begin, finish, zone, timing, reads):
        parts = []
        if dimension:
            parts.append(value or NO_QUEUE)
        if timing:
            parts.append(time_key)
        _add(groups[",".join(parts)], counters)
        if dimension != "agent":
            _add(total, counters)
    if dimension == "agent":  # an agent's figures are only the ones credited to it; read the whole
        for _key, _value, counters in _counted("all", begin, finish, zone, None, reads):
            _add(total, counters)
    keys = sorted(groups)
    return {
        "from": _iso(begin),
        "to": _iso(finish),
        "tz": zone.key,
        "group_by": ",".join(part for part in (dimension, timing) if part) or None,
        "service_level_seconds": threshold,
        "groups": [
            {"key": key, **_split(key, dimension, timing), "metrics": metrics(groups[key], threshold)} for key in keys
        ],
        "total": metrics(total, threshold),
        "cost": {"queries": reads.requests, "items_read": reads.items},
        "notes": {
            "hours": "every figure of a cycle is counted in the hour (and day) the cycle started, shown in tz",
            "percentile_error": "p50 and p90 are within one histogram bucket "
            f"(at most {round(histogram.MAX_RELATIVE_ERROR * 100)}% of the value)",
        },
    }


def _split(key: str, dimension: str | None, timing: str | None) -> dict[str, str]:
    parts = key.split(",") if key else []
    named: dict[str, str] = {}
    if dimension and parts:
        named[dimension] = parts.pop(0)
    if timing and parts:
        named[timing] = parts.pop(0)
    return named


def _threshold(value: str | None) -> float:
    if value is None or not str(value).strip():
        return 60.0
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise InvalidRequest("service_level: a number of seconds, e.g. 60") from None
    if not 0 < seconds <= 30 * 86400:
        raise InvalidRequest("service_level: between 0 and 2592000 seconds")
    return seconds


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


# --- Cycles (drill-down and CSV) ---------------------------------------------------------------------------

FILTER_METRICS = (
    *DURATIONS,
    "csat",
    "customer_messages",
    "transfers",
)


def row(state: CycleState) -> dict[str, Any]:
    """One cycle with every metric, as the drill-down and the CSV show it."""
    csat = state.csat
    durations = state.durations
    business = state.business
    return {
        "id": state.cycle_id,
        "conversation_id": state.conversation_id,
        "customer_id": state.customer_id,
        "started_at": _iso(state.started_at),
        "resolved_at": _iso(state.resolved_at),
        "channel": state.channel,
        "last_channel": state.last_channel,
        "queue": state.queue,
        "agents": state.agents,
        "resolved_by": state.resolved_by,
        "resolved_agent_id": state.resolved_agent_id,
        "customer_messages": state.customer_messages,
        "agent_messages": state.agent_messages,
        "bot_messages": state.bot_messages,
        "automatic_messages": state.automatic_messages,
        "first_response_seconds": durations.get("first_response"),
        "first_response_business_seconds": business.get("first_response"),
        "first_response_agent_id": state.first_response_agent_id,
        "first_bot_response_seconds": durations.get("first_bot_response"),
        "first_bot_response_business_seconds": business.get("first_bot_response"),
        "next_reply_count": state.next_replies,
        "next_reply_mean_seconds": round(durations["next_reply"] / state.next_replies, 1)
        if state.next_replies and "next_reply" in durations
        else None,
        "next_reply_business_mean_seconds": round(business["next_reply"] / state.next_replies, 1)
        if state.next_replies and "next_reply" in business
        else None,
        "queue_wait_count": state.queue_waits,
        "queue_wait_seconds": durations.get("queue_wait"),
        "queue_wait_business_seconds": business.get("queue_wait"),
        "handle_time_seconds": durations.get("handle_time"),
        "handle_time_business_seconds": business.get("handle_time"),
        "resolution_time_seconds": durations.get("resolution_time"),
        "resolution_time_business_seconds": business.get("resolution_time"),
        "offers_created": state.offers.get("created", 0),
        "offers_accepted": state.offers.get("accepted", 0),
        "offers_rejected": state.offers.get("rejected", 0),
        "offers_expired": state.offers.get("expired", 0),
        "transfers": state.transfers,
        "channel_switches": state.switches,
        "resolved_without_human": state.resolved_by == "bot",
        "sla_policy": state.sla_policy,
        "sla_missed": state.sla_missed,
        "csat_sent_at": _iso(csat.sent_at) if csat else None,
        "csat_agents": csat.agent_ids if csat else [],
        "csat_rating": csat.rating if csat else None,
        "csat_comment": csat.comment if csat else None,
    }


def _metric_value(cycle: dict[str, Any], metric: str) -> float | None:
    if metric == "csat":
        return cycle["csat_rating"]
    if metric in ("customer_messages", "transfers"):
        return cycle[metric]
    if metric == "next_reply":
        return cycle["next_reply_mean_seconds"]
    return cycle[f"{metric}_seconds"]


def _bound(value: str | None, name: str) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        raise InvalidRequest(f"{name}: a number") from None


def _cursor(value: str | None) -> tuple[int, int, str | None]:
    if not value:
        return 0, 0, None
    match = re.fullmatch(r"(\d{1,4})\.(\d{1,2})\.(cyc_[0-9A-Z]{1,40})?", value)
    if not match:
        raise InvalidRequest("cursor: pass back the next_cursor of the previous page")
    return int(match.group(1)), int(match.group(2)), match.group(3)


def cycles(
    params: dict[str, str | None], limit: int = 50, max_items: int = MAX_ITEMS_PER_CYCLES_CALL
) -> dict[str, Any]:
    """The cycles that started in [from, to), filtered, one page at a time, day by day (UTC) and
    shard by shard. A call reads at most `max_items` rows in at most MAX_QUERIES_PER_CYCLES_CALL
    Queries: a page can come back short, with a next_cursor, when the filters are narrow."""
    begin, finish, _zone_info = period(params.get("from"), params.get("to"), params.get("tz"))
    metric = (params.get("metric") or "").strip() or None
    if metric is not None and metric not in FILTER_METRICS:
        raise InvalidRequest(f"metric: one of {', '.join(FILTER_METRICS)}")
    low, high = _bound(params.get("min"), "min"), _bound(params.get("max"), "max")
    if (low is not None or high is not None) and metric is None:
        raise InvalidRequest("min and max need a metric")
    wanted = {name: (params.get(name) or "").strip() for name in ("channel", "queue", "agent", "resolved_by")}
    days = _days(begin, finish)
    day_index, shard, after = _cursor(params.get("cursor"))
    reads = Reads()
    found: list[dict[str, Any]] = []
    low_id, high_id = id_floor("cyc", begin), id_floor("cyc", finish)
    shards = settings().analytics_shards
    while (
        day_index < len(days)
        and len(found) < limit
        and reads.items < max_items
        and reads.requests < MAX_QUERIES_PER_CYCLES_CALL
    ):
        if shard >= shards:
            day_index, shard, after = day_index + 1, 0, None
            continue
        page = store.cycle_rows(days[day_index], shard, low_id, high_id, after, min(500, max_items), reads)
        for state in page:
            after = state.cycle_id
            if state.started_at < begin or state.started_at >= finish:
                continue
            cycle = row(state)
            if not _matches(cycle, wanted, metric, low, high):
                continue
            found.append(cycle)
            if len(found) >= limit:
                break
        if len(page) < min(500, max_items) and len(found) < limit:
            shard, after = shard + 1, None
    more = day_index < len(days)
    next_cursor = f"{day_index}.{shard}.{after or ''}" if more else None
    found.sort(key=lambda cycle: cycle["id"])
    return {"cycles": found, "next_cursor": next_cursor, "cost": {"queries": reads.requests, "items_read": reads.items}}


def _matches(
    cycle: dict[str, Any], wanted: dict[str, str], metric: str | None, low: float | None, high: float | None
) -> bool:
    if wanted["channel"] and cycle["channel"] != wanted["channel"]:
        return False
    if wanted["queue"] and cycle["queue"] != wanted["queue"]:
        return False
    if wanted["agent"] and wanted["agent"] not in cycle["agents"] and wanted["agent"] != cycle["resolved_agent_id"]:
        return False
    if wanted["resolved_by"] and cycle["resolved_by"] != wanted["resolved_by"]:
        return False
    if metric is None:
        return True
    value = _metric_value(cycle, metric)
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _days(begin: datetime, finish: datetime) -> list[str]:
    days = []
    day = begin.date()
    while datetime.combine(day, time(), UTC) < finish:
        days.append(f"{day:%Y-%m-%d}")
        day += timedelta(days=1)
    return days


CSV_COLUMNS = tuple(
    row(
        CycleState(
            cycle_id="cyc_0",
            conversation_id="c",
            customer_id="c",
            started_at=datetime(2000, 1, 1, tzinfo=UTC),
            channel="sms",
            last_channel="sms",
        )
    )
)


def cycles_csv(params: dict[str, str | None]) -> tuple[str, str | None]:
    """Every cycle that started in [from, to) as CSV, one row per cycle, at most MAX_CSV_ROWS per
    call (the next call passes back the cursor)."""
    page = cycles({**params, "metric": None, "min": None, "max": None}, limit=MAX_CSV_ROWS, max_items=MAX_CSV_ROWS * 2)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for cycle in page["cycles"]:
        writer.writerow({key: _cell(value) for key, value in cycle.items()})
    return out.getvalue(), page["next_cursor"]


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet never runs a customer's comment as a formula
    return value


# --- Now -------------------------------------------------------------------------------------------------


def realtime() -> dict[str, Any]:
    """Per queue and channel: open, unassigned, waiting, offered, assigned, SLAs at risk and the
    oldest wait now; per channel the agents available, away and offline. Reads the gauge and
    roster partitions (one Query per shard each) and, for each queue and channel with someone
    waiting, one single-item Query per shard of the waiting index: nothing grows with the number
    of agents or conversations."""
    reads = Reads()
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for item in store.gauges(reads):
        key = (str(item.get("queue", NO_QUEUE)), str(item.get("channel", "unknown")))
        for gauge in store.GAUGES:
            rows[key][gauge] = rows[key].get(gauge, 0) + _number(item.get(gauge, 0))
    queues = []
    totals = dict.fromkeys(("open", "unassigned", "waiting", "offered", "assigned", "at_risk"), 0)
    for (queue, channel), values in sorted(rows.items()):
        figures = {gauge: max(0, int(values.get(gauge, 0))) for gauge in store.GAUGES}
        figures["unassigned"] = max(0, figures["open"] - figures["assigned"])
        if not any(figures.values()):
            continue
        oldest = store.oldest_wait(queue, channel, reads) if figures["waiting"] else None
        waited = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else None
        queues.append(
            {
                "queue": queue,
                "channel": channel,
                **figures,
                "oldest_wait_seconds": round(max(0.0, waited), 1) if waited is not None else None,
            }
        )
        for name in totals:
            totals[name] += figures[name]
    agents = [{"channel": channel, **counts} for channel, counts in sorted(agent_store.roster(reads).items())]
    return {
        "at": _iso(now),
        "queues": queues,
        "totals": totals,
        "agents": agents,
        "cost": {"queries": reads.requests, "items_read": reads.items},
    }
