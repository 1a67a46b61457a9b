"""Analytics benchmark: AWS requests per counted event, and the cost of long summaries.

    python bench/analytics.py [--conversations 40] [--days 90] [--check]

1. Counting: `--conversations` full cycles (a customer message, queued, offered, accepted, an
   agent reply, a second customer message, a second reply, resolved), folded through
   `services.analytics.count` against the local stack's emulator, the way services/events.py
   calls it. Prints AWS requests per event and per event analytics reads.
2. Reading: every hour and day of `--days` days is given its counted items (one per shard, as a
   busy hub's would be; written straight to the table in batches), then `GET /v1/analytics/summary`'s
   service function is run for 1 day and for the whole period (`group_by=day`, in
   ANALYTICS_TIMEZONE), printing Queries, items read and the time each took. The read cost must
   depend on the period, never on traffic.

The last line is a JSON object with the figures. `--check` exits 1 when counting costs more than
2 requests per event, the long summary more Queries than (months x shards) x 2 pages, or more
items than (days + 2 x 24) x shards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RequestCounter, report_checks, running_stack, speed_up_emulator


def cycle_events(index: int, start: datetime) -> list[Any]:
    """One whole cycle of one conversation, as the hub's services emit it."""
    from chalicelib.domain.events import new_event
    from chalicelib.domain.ids import id_floor

    conversation = f"con_bench{index:05d}"

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat()

    def message(key: str, seconds: float, direction: str, sent_by: str | None = None) -> Any:
        message_id = id_floor("msg", start + timedelta(seconds=seconds))[:-6] + key
        body = {
            "id": message_id,
            "conversation_id": conversation,
            "customer_id": f"cus_{index}",
            "channel": ("sms", "whatsapp", "email", "webchat")[index % 4],
            "direction": direction,
            "created_at": at(seconds),
            "sent_by": sent_by,
            "agent_id": "ada" if sent_by == "agent" else None,
        }
        return new_event("message.created", {"message": body, "queue": "general"}, message_id)

    offer = {"id": f"ofr_{index}", "agent_id": "ada", "conversation_id": conversation, "decided_at": at(40)}
    task = {"queue": "general", "enqueued_at": at(1)}
    return [
        message("CUST01", 0, "inbound"),
        new_event("conversation.queued", {"conversation": {"id": conversation}, "task": task}, f"q{index}"),
        new_event("offer.created", {"offer": offer}, f"o{index}"),
        new_event("offer.accepted", {"offer": offer}, f"a{index}"),
        message("AGNT01", 90, "outbound", "agent"),
        message("CUST02", 200, "inbound"),
        message("AGNT02", 260, "outbound", "agent"),
        new_event("conversation.resolved", {"conversation": {"id": conversation}, "agent_id": "ada"}, f"r{index}"),
    ]


def fill_hours(days: int, end: datetime, template: dict[str, Any]) -> int:
    """Give every hour and day of the period its counted items in every shard (BatchWriteItem)."""
    from chalicelib.config import settings
    from chalicelib.store import analytics as store
    from chalicelib.store import table

    client, name = table.client(), table.table_name()
    items = []
    hour = (end - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        for shard in range(settings().analytics_shards):
            items.append({**template, **store.stat_key("all", "", hour, shard)})
            if hour.hour == 0:
                items.append({**template, **store.day_key("all", "", hour, shard)})
        hour += timedelta(hours=1)
    for offset in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": table.serialize(item)}} for item in items[offset : offset + 25]]
        while batch:
            unprocessed = client.batch_write_item(RequestItems={name: batch}).get("UnprocessedItems", {})
            batch = unprocessed.get(name, [])
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    os.environ.setdefault("ANALYTICS_SHARDS", "4")

    speed_up_emulator()  # the emulator's own costs, not the hub's; request counts are unchanged
    with running_stack():
        from chalicelib.config import settings
        from chalicelib.services import analytics
        from chalicelib.store import table

        counter = RequestCounter(lambda: threading.current_thread().name, roles=("MainThread",))
        counter.install()
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        events = 0
        counter.reset()
        for index in range(args.conversations):
            for event in cycle_events(index, start + timedelta(seconds=index)):
                analytics.count([event])
                events += 1
        calls = counter.snapshot()[0].get("MainThread", {})
        per_event = sum(calls.values()) / events
        print(f"Counting: {events} events of {args.conversations} cycles")
        print(f"  AWS requests per event: {per_event:.2f}  ({dict(sorted(calls.items()))})")

        template_key = {"pk": f"ASTAT#all#{start:%Y-%m}#0", "sk": f"{start:%Y-%m-%dT%H}#"}
        template = {k: v for k, v in (table.get(template_key) or {}).items() if k not in ("pk", "sk")}
        end = datetime.now(UTC)
        filled = fill_hours(args.days, end, template)
        print(f"\nFilled {filled} hourly and daily items ({args.days} days, {settings().analytics_shards} shards)")

        results: dict[str, dict[str, Any]] = {}
        for label, days in (("1 day", 1), (f"{args.days} days", args.days)):
            began = time.monotonic()
            answer = analytics.summary((end - timedelta(days=days)).isoformat(), end.isoformat(), "UTC", "day", "60")
            elapsed = (time.monotonic() - began) * 1000
            results[label] = {**answer["cost"], "ms": round(elapsed, 1), "groups": len(answer["groups"])}
            print(
                f"  summary {label:>8} group_by=day: {answer['cost']['queries']} Queries, "
                f"{answer['cost']['items_read']} items read, {len(answer['groups'])} days, {elapsed:.0f} ms"
            )
        began = time.monotonic()
        live = analytics.realtime()
        print(
            f"  realtime: {live['cost']['queries']} Queries, {live['cost']['items_read']} items, "
            f"{(time.monotonic() - began) * 1000:.0f} ms"
        )

    long = results[f"{args.days} days"]
    months = args.days // 28 + 2
    bound = months * settings().analytics_shards * 2
    per_day = long["items_read"] / args.days
    checks = [
        ("analytics requests per counted event <= 2", per_event <= 2, f"{per_event:.2f}"),
        (
            f"a {args.days}-day summary takes at most (months x shards x 2 pages) = {bound} Queries",
            long["queries"] <= bound,
            str(long["queries"]),
        ),
        (
            "its items read are at most (days + 2 x 24) x shards (daily items, hourly at the edges)",
            long["items_read"] <= (args.days + 48) * settings().analytics_shards,
            f"{long['items_read']} ({per_day:.1f} a day)",
        ),
    ]
    status = report_checks(checks, started, enforce=args.check)
    print(
        json.dumps(
            {
                "events": events,
                "requests_per_event": round(per_event, 3),
                "summary_1_day": results["1 day"],
                "summary_long": {"days": args.days, **long},
                "shards": settings().analytics_shards,
            }
        )
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
