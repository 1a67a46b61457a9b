"""CRM webhook endpoints and their delivery stats.

| item              | pk       | sk                |
|-------------------|----------|-------------------|
| webhook endpoint  | WEBHOOKS | WH#<endpoint id>  |

All endpoints share one partition, so the fan-out of an event lists them with one Query (never
a Scan); a hub has a handful of endpoints, far below a partition's limits. Delivery stats are
updated in place with UpdateItem, conditioned on the endpoint still existing, so a delivery that
finishes after a delete never brings the endpoint back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.events import WebhookEndpoint
from chalicelib.store import table
from chalicelib.store.table import ConditionFailed

PARTITION = "WEBHOOKS"
SORT_PREFIX = "WH#"
PAGE = 100


def endpoint_key(endpoint_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": f"{SORT_PREFIX}{endpoint_id}"}


def _item(endpoint: WebhookEndpoint) -> dict[str, Any]:
    fields = endpoint.model_dump(mode="json", exclude_none=True)
    return {**endpoint_key(endpoint.id), "type": "webhook_endpoint", **fields}


def put_endpoint(endpoint: WebhookEndpoint) -> None:
    """Store a new endpoint (ids are fresh ULIDs; the condition guards against overwriting)."""
    table.client().put_item(
        TableName=table.table_name(),
        Item=table.serialize(_item(endpoint)),
        ConditionExpression="attribute_not_exists(pk)",
    )


def get_endpoint(endpoint_id: str) -> WebhookEndpoint | None:
    item = table.get(endpoint_key(endpoint_id))
    return WebhookEndpoint.model_validate(item) if item else None


def list_endpoints() -> list[WebhookEndpoint]:
    """Every endpoint, oldest first (ids are ULIDs), with strongly consistent Query pages."""
    endpoints: list[WebhookEndpoint] = []
    start_after: dict[str, str] | None = None
    while True:
        items, more = table.query_page(PARTITION, SORT_PREFIX, PAGE, start_after)
        endpoints.extend(WebhookEndpoint.model_validate(item) for item in items)
        if not more or not items:
            return endpoints
        start_after = {"pk": items[-1]["pk"], "sk": items[-1]["sk"]}


def delete_endpoint(endpoint_id: str) -> bool:
    """Delete an endpoint; False if there was none."""
    client = table.client()
    try:
        client.delete_item(
            TableName=table.table_name(),
            Key=table.serialize(endpoint_key(endpoint_id)),
            ConditionExpression="attribute_exists(pk)",
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def record_success(endpoint_id: str, at: datetime) -> bool:
    """Note a delivered event; False if the endpoint no longer exists."""
    return _update(
        endpoint_id,
        "SET #success = :at, #failures = :zero",
        {"#success": "last_success_at", "#failures": "consecutive_failures"},
        {":at": at.isoformat(), ":zero": 0},
    )


def record_failure(endpoint_id: str, at: datetime, error: str) -> bool:
    """Note a failed attempt; False if the endpoint no longer exists."""
    return _update(
        endpoint_id,
        "SET #failure = :at, #error = :error ADD #failures :one",
        {"#failure": "last_failure_at", "#error": "last_error", "#failures": "consecutive_failures"},
        {":at": at.isoformat(), ":error": error, ":one": 1},
    )


def _update(endpoint_id: str, expression: str, names: dict[str, str], values: dict[str, Any]) -> bool:
    try:
        table.update(endpoint_key(endpoint_id), expression, names, values, condition="attribute_exists(pk)")
    except ConditionFailed:
        return False
    return True
