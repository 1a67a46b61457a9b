"""When each customer was last asked for a rating: one item per customer, so the cooldown is one
GetItem to read and one conditional PutItem to claim (two racing surveys: one wins)."""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.store import table


def cooldown_key(customer_id: str) -> dict[str, str]:
    return {"pk": f"SURVEYED#{customer_id}", "sk": "SURVEYED"}


def last_survey_at(customer_id: str) -> datetime | None:
    item = table.get(cooldown_key(customer_id))
    return datetime.fromisoformat(str(item["at"])) if item and item.get("at") else None


def claim_cooldown(customer_id: str, survey_id: str, now: datetime, cooldown: timedelta) -> bool:
    """Record that `survey_id` asks the customer now, unless another survey did within the
    cooldown (the same survey again, a retry, is allowed)."""
    try:
        table.client().put_item(
            TableName=table.table_name(),
            Item=table.serialize({**cooldown_key(customer_id), "at": now.isoformat(), "survey_id": survey_id}),
            ConditionExpression="attribute_not_exists(pk) OR survey_id = :survey OR #at < :cutoff",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues=table.serialize({":survey": survey_id, ":cutoff": (now - cooldown).isoformat()}),
        )
    except table.client().exceptions.ConditionalCheckFailedException:
        return False
    return True
