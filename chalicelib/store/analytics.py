"""Analytics storage: each conversation's current cycle, the cycle rows, the hourly counts and
the live gauges. Keys (shard = a hash of the conversation id modulo ANALYTICS_SHARDS, so each
partition takes 1/N of the writes and no key is written by every event):

| item                    | pk                                   | sk                    |
|-------------------------|--------------------------------------|-----------------------|
| current cycle (head)    | ACONV#<conversation id>              | HEAD                  |
| cycle row (drill-down)  | ACYC#<UTC start date>#<shard>        | <cycle id>            |
| hourly counts           | ASTAT#<dimension>#<UTC month>#<shard> | <UTC hour>#<value>   |
| daily counts            | ASTAT#<dimension>#D<year>#<shard>    | <local date>#<value> |
| live gauges             | AGAUGE#<shard>                       | <queue>#<channel>     |

Cycle ids start with the time of their first message, so a cycle-row partition sorts by start.
Daily counts follow the dates of ANALYTICS_TIMEZONE, so a summary by day in that zone reads one
item per day and shard; hourly counts serve other zones, hours and the edges of a period.
A head waiting in line carries gsi1pk `AWAIT#<queue>#<channel>#<shard>` and gsi1sk its wait's
start, so the oldest wait of a queue is one Query of one item per shard.

One fold (services/analytics.py) is one TransactWriteItems: the head and the row put on the
head's version, one UpdateItem per counted item (ADD), and one per gauge item.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.config import settings
from chalicelib.domain.analytics import GAUGES, CycleState, Increment  # noqa: F401 (GAUGES read by services)
from chalicelib.store import table
from chalicelib.store.table import ConditionFailed, TransactionCancelled

DIMENSIONS = ("all", "channel", "queue", "agent")
HEAD = "HEAD"


class Changed(ConditionFailed):
    """The head (or the row) moved on since it was read: read again and fold again."""


@dataclass
class Reads:
    """What a read cost: requests made and items returned (the benchmarks print these)."""

    requests: int = 0
    items: int = 0


def shard_of(conversation_id: str) -> int:
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % settings().analytics_shards


def head_key(conversation_id: str) -> dict[str, str]:
    return {"pk": f"ACONV#{conversation_id}", "sk": HEAD}


def row_key(state_or_id: CycleState | tuple[str, str, datetime]) -> dict[str, str]:
    if isinstance(state_or_id, CycleState):
        conversation_id, cycle_id, started = state_or_id.conversation_id, state_or_id.cycle_id, state_or_id.started_at
    else:
        conversation_id, cycle_id, started = state_or_id
    return {"pk": f"ACYC#{started:%Y-%m-%d}#{shard_of(conversation_id)}", "sk": cycle_id}


def hour_of(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H}"


def stat_key(dimension: str, value: str, started: datetime, shard: int) -> dict[str, str]:
    return {"pk": f"ASTAT#{dimension}#{started:%Y-%m}#{shard}", "sk": f"{hour_of(started)}#{value}"}


def reporting_zone() -> ZoneInfo:
    try:
        return ZoneInfo(settings().analytics_timezone.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day_key(dimension: str, value: str, started: datetime, shard: int) -> dict[str, str]:
    """The daily counts, by the cycle's start date in ANALYTICS_TIMEZONE (one partition a year)."""
    local = started.astimezone(reporting_zone())
    return {"pk": f"ASTAT#{dimension}#D{local:%Y}#{shard}", "sk": f"{local:%Y-%m-%d}#{value}"}


def _state(item: dict[str, Any] | None) -> CycleState | None:
    if not item:
        return None
    return CycleState.model_validate({**json.loads(item["state"]), "version": int(item.get("version", 0))})


def head_from_item(item: dict[str, Any] | None) -> CycleState | None:
    """A head read elsewhere (store/thread.inbound_inputs reads it with the conversation)."""
    return _state(item)


def get_head(conversation_id: str) -> CycleState | None:
    return _state(table.get(head_key(conversation_id)))


def get_row(conversation_id: str, cycle_id: str, started: datetime) -> CycleState | None:
    return _state(table.get(row_key((conversation_id, cycle_id, started))))


def _stored(state: CycleState, key: dict[str, str]) -> dict[str, Any]:
    body = state.model_dump(mode="json", exclude={"version"}, exclude_defaults=True)
    return {**key, "version": state.version, "state": json.dumps(body, separators=(",", ":"))}


def _versioned(expected: int) -> str:
    return "attribute_not_exists(pk)" if expected == 0 else "version = :expected"


def _put(item: dict[str, Any], expected: int) -> dict[str, Any]:
    op = table.put_op(item, _versioned(expected))
    if expected:
        op["Put"]["ExpressionAttributeValues"] = table.serialize({":expected": expected})
    return op


def _adds(counters: dict[str, float]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = []
    for index, (counter, amount) in enumerate(sorted(counters.items())):
        names[f"#c{index}"] = counter
        values[f":c{index}"] = amount
        parts.append(f"#c{index} :c{index}")
    return "ADD " + ", ".join(parts), names, values


def _stat_ops(counted: Iterable[tuple[CycleState, Iterable[Increment]]]) -> list[dict[str, Any]]:
    """One ADD per counted item (a transaction may touch an item once): overall, the cycle's
    channel and queue, and each credited agent, in the hour the cycle started."""
    by_item: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for state, increments in counted:
        shard = shard_of(state.conversation_id)
        for increment in increments:
            targets = [("all", ""), ("channel", state.channel), ("queue", state.queue)]
            targets += [("agent", agent) for agent in dict.fromkeys(increment.agents) if agent]
            for dimension, value in targets:
                for key in (
                    stat_key(dimension, value, state.started_at, shard),
                    day_key(dimension, value, state.started_at, shard),
                ):
                    by_item[(key["pk"], key["sk"], "")][increment.counter] += increment.amount
    ops = []
    for (pk, sk, _), counters in sorted(by_item.items()):
        counters = {name: amount for name, amount in counters.items() if amount}
        if not counters:
            continue
        expression, names, values = _adds(counters)
        ops.append(table.update_op({"pk": pk, "sk": sk}, expression, names, values, None))
    return ops


def _gauge_ops(shard: int, moves: dict[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    by_item: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for (queue, channel, gauge), delta in moves.items():
        by_item[(queue, channel)][gauge] = delta
    ops = []
    for (queue, channel), counters in sorted(by_item.items()):
        expression, names, values = _adds(counters)
        names.update({"#q": "queue", "#ch": "channel"})
        values.update({":q": queue, ":ch": channel})
        ops.append(
            table.update_op(
                {"pk": f"AGAUGE#{shard}", "sk": f"{queue}#{channel}"},
                expression + " SET #q = :q, #ch = :ch",
                names,
                values,
                None,
            )
        )
    return ops


def waiting_index(state: CycleState) -> dict[str, str]:
    if state.open and state.phase.value == "waiting" and state.line_since is not None:
        queue = state.line_queue or state.queue
        return {
            "gsi1pk": f"AWAIT#{queue}#{state.channel}#{shard_of(state.conversation_id)}",
            "gsi1sk": state.line_since.isoformat(),
        }
    return {}


def save(
    state: CycleState,
    expected_version: int,
    increments: list[Increment],
    gauges: dict[tuple[str, str, str], int],
    *,
    head: bool = True,
    finished: Iterable[tuple[CycleState, list[Increment]]] = (),
) -> None:
    """Write one fold, all or nothing: the head (when `head`) at `expected_version` + 1 with the
    cycle's row, the rows of cycles that ended inside the same batch (`finished`), the counts and
    the gauge moves. With `head=False` only the row of an earlier cycle is written, on its own
    version. Raises Changed when another fold got there first."""
    written = state.model_copy(update={"version": expected_version + 1})
    ops: list[dict[str, Any]] = []
    if head:
        ops.append(
            _put({**_stored(written, head_key(state.conversation_id)), **waiting_index(written)}, expected_version)
        )
        ops.append(table.put_op(_stored(written, row_key(state)), None))  # the head's condition guards it
        ops += [table.put_op(_stored(done, row_key(done)), None) for done, _ in finished]
    else:
        ops.append(_put(_stored(written, row_key(state)), expected_version))
    ops += _stat_ops([*finished, (state, increments)])
    ops += _gauge_ops(shard_of(state.conversation_id), gauges)
    try:
        table.transact(ops)
    except TransactionCancelled as exc:
        if exc.conflicted or "ConditionalCheckFailed" in exc.reasons:
            raise Changed() from None
        raise


# --- Reads -------------------------------------------------------------------------------------------


def _query(kwargs: dict[str, Any], reads: Reads, limit: int | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        request = {"TableName": table.table_name(), **kwargs}
        if start:
            request["ExclusiveStartKey"] = start
        if limit is not None:
            request["Limit"] = limit - len(items)
        response = table.client().query(**request)
        reads.requests += 1
        page = [table.deserialize(item) for item in response.get("Items", [])]
        reads.items += len(page)
        items.extend(page)
        start = response.get("LastEvaluatedKey")
        if not start or (limit is not None and len(items) >= limit):
            return items


def _between(partition: str, low: str, high: str, reads: Reads) -> list[dict[str, Any]]:
    return _query(
        {
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": table.serialize({":pk": partition, ":low": low, ":high": high + "#\uffff"}),
        },
        reads,
    )


def stats(dimension: str, months: list[str], first_hour: str, last_hour: str, reads: Reads) -> list[dict[str, Any]]:
    """Every hourly item of `dimension` from `first_hour` to `last_hour` (UTC, inclusive)."""
    items: list[dict[str, Any]] = []
    for month in months:
        for shard in range(settings().analytics_shards):
            items += _between(f"ASTAT#{dimension}#{month}#{shard}", first_hour, last_hour, reads)
    return items


def daily_stats(dimension: str, first_day: date, last_day: date, reads: Reads) -> list[dict[str, Any]]:
    """Every daily item of `dimension` from `first_day` to `last_day` (dates in ANALYTICS_TIMEZONE)."""
    items: list[dict[str, Any]] = []
    for year in range(first_day.year, last_day.year + 1):
        low = max(first_day, date(year, 1, 1))
        high = min(last_day, date(year, 12, 31))
        for shard in range(settings().analytics_shards):
            items += _between(f"ASTAT#{dimension}#D{year}#{shard}", f"{low:%Y-%m-%d}", f"{high:%Y-%m-%d}", reads)
    return items


def gauges(reads: Reads) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for shard in range(settings().analytics_shards):
        items += _query(
            {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": table.serialize({":pk": f"AGAUGE#{shard}"}),
            },
            reads,
        )
    return items


def oldest_wait(queue: str, channel: str, reads: Reads) -> str | None:
    """The start of the longest wait in line in a queue on a channel now (ISO), if any."""
    oldest: str | None = None
    for shard in range(settings().analytics_shards):
        found = _query(
            {
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": table.serialize({":pk": f"AWAIT#{queue}#{channel}#{shard}"}),
                "ScanIndexForward": True,
            },
            reads,
            limit=1,
        )
        if found and (oldest is None or str(found[0]["gsi1sk"]) < oldest):
            oldest = str(found[0]["gsi1sk"])
    return oldest


def cycle_rows(
    day: str, shard: int, low: str, high: str, after: str | None, limit: int, reads: Reads
) -> list[CycleState]:
    """Cycle rows of one (UTC day, shard) partition with ids from `low` to `high`, after `after`."""
    values = {":pk": f"ACYC#{day}#{shard}", ":low": max(low, after + "\u0000") if after else low, ":high": high}
    items = _query(
        {
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": table.serialize(values),
        },
        reads,
        limit=limit,
    )
    return [state for item in items if (state := _state(item)) is not None]
