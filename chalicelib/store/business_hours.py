"""Business hours schedules: one item per schedule, read and written by key.

| item                    | pk               | sk  |
|-------------------------|------------------|-----|
| business hours schedule | BH#<schedule id> | BH  |

A schedule is at most 400 exceptions of at most 10 intervals (well under DynamoDB's 400 KB item
limit). Each operation is one request: PutItem answers the old item (so "created" costs no read
and two racing creates cannot both say created), DeleteItem likewise. There is no listing, so
no Scan and no shared partition: callers name the schedule they use.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.business_hours import Schedule
from chalicelib.store import table

PREFIX = "BH#"
SORT_KEY = "BH"
ITEM_TYPE = "business_hours"


def schedule_key(schedule_id: str) -> dict[str, str]:
    return {"pk": f"{PREFIX}{schedule_id}", "sk": SORT_KEY}


def _item(schedule: Schedule) -> dict[str, Any]:
    return {**schedule_key(schedule.id), "type": ITEM_TYPE, **schedule.model_dump(mode="json", exclude_none=True)}


def _schedule(item: dict[str, Any]) -> Schedule:
    return Schedule.model_validate({name: value for name, value in item.items() if name in Schedule.model_fields})


def put_schedule(schedule: Schedule) -> bool:
    """Create or replace a schedule; True if it did not exist before."""
    response = table.client().put_item(
        TableName=table.table_name(), Item=table.serialize(_item(schedule)), ReturnValues="ALL_OLD"
    )
    return not response.get("Attributes")


def get_schedule(schedule_id: str) -> Schedule | None:
    item = table.get(schedule_key(schedule_id))
    return _schedule(item) if item else None


def delete_schedule(schedule_id: str) -> bool:
    """Delete a schedule; False if there was none."""
    response = table.client().delete_item(
        TableName=table.table_name(), Key=table.serialize(schedule_key(schedule_id)), ReturnValues="ALL_OLD"
    )
    return bool(response.get("Attributes"))
