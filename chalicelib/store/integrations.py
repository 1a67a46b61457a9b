"""Bot integrations and their delivery stats.

| item        | pk           | sk                   |
|-------------|--------------|----------------------|
| integration | INTEGRATIONS | INT#<integration id> |

One item per integration, all in one partition, so listing them is one Query (never a Scan) and
reading one is one GetItem; the service caps how many there are (services/integrations.py), far
below a partition's limits. Delivery stats are updated in place with UpdateItem, conditioned on
the integration still existing, so a delivery that finishes after a delete never brings it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.integrations import Integration
from chalicelib.store import table
from chalicelib.store.table import ConditionFailed

PARTITION = "INTEGRATIONS"
SORT_PREFIX = "INT#"
PAGE = 100


def integration_key(integration_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": f"{SORT_PREFIX}{integration_id}"}


def _item(integration: Integration) -> dict[str, Any]:
    fields = integration.model_dump(mode="json", exclude_none=True)
    return {**integration_key(integration.id), "type": "integration", **fields}


def put_integration(integration: Integration) -> None:
    """Store a new integration (ids are fresh ULIDs; the condition guards against overwriting)."""
    table.client().put_item(
        TableName=table.table_name(),
        Item=table.serialize(_item(integration)),
        ConditionExpression="attribute_not_exists(pk)",
    )


def get_integration(integration_id: str) -> Integration | None:
    item = table.get(integration_key(integration_id))
    return Integration.model_validate(item) if item else None


def list_integrations() -> list[Integration]:
    """Every integration, oldest first (ids are ULIDs), with strongly consistent Query pages."""
    found: list[Integration] = []
    start_after: dict[str, str] | None = None
    while True:
        items, more = table.query_page(PARTITION, SORT_PREFIX, PAGE, start_after)
        found.extend(Integration.model_validate(item) for item in items)
        if not more or not items:
            return found
        start_after = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}


def delete_integration(integration_id: str) -> bool:
    """Delete an integration; False if there was none."""
    client = table.client()
    try:
        client.delete_item(
            TableName=table.table_name(),
            Key=table.serialize(integration_key(integration_id)),
            ConditionExpression="attribute_exists(pk)",
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def record_success(integration_id: str, at: datetime) -> bool:
    """Note a delivered event; False if the integration no longer exists."""
    return _update(
        integration_id,
        "SET #success = :at, #failures = :zero",
        {"#success": "last_success_at", "#failures": "consecutive_failures"},
        {":at": at.isoformat(), ":zero": 0},
    )


def record_failure(integration_id: str, at: datetime, error: str) -> bool:
    """Note a failed attempt; False if the integration no longer exists."""
    return _update(
        integration_id,
        "SET #failure = :at, #error = :error ADD #failures :one",
        {"#failure": "last_failure_at", "#error": "last_error", "#failures": "consecutive_failures"},
        {":at": at.isoformat(), ":error": error, ":one": 1},
    )


def _update(integration_id: str, expression: str, names: dict[str, str], values: dict[str, Any]) -> bool:
    try:
        table.update(integration_key(integration_id), expression, names, values, condition="attribute_exists(pk)")
    except ConditionFailed:
        return False
    return True
