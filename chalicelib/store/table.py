"""Low-level access to the hub's DynamoDB table: (de)serialisation and error translation.

This package is the only place that builds DynamoDB expressions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chalicelib import aws
from chalicelib.config import settings


class ConditionFailed(Exception):
    """A conditional write found the item in another state than required."""


class TransactionCancelled(Exception):
    """A transaction was cancelled; `reasons` holds one code per item ('None' where it was fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    @property
    def conflicted(self) -> bool:
        return "TransactionConflict" in self.reasons

    def failed_at(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


_serializer: Any = None
_deserializer: Any = None


def _codecs() -> tuple[Any, Any]:
    global _serializer, _deserializer
    if _serializer is None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        _serializer, _deserializer = TypeSerializer(), TypeDeserializer()
    return _serializer, _deserializer


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, set):
        return sorted(_plain(item) for item in value)
    return value


def _dynamo_ready(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _dynamo_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_dynamo_ready(item) for item in value]
    return value


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    serializer, _ = _codecs()
    return {key: serializer.serialize(_dynamo_ready(value)) for key, value in item.items()}


def serialize_value(value: Any) -> dict[str, Any]:
    serializer, _ = _codecs()
    return serializer.serialize(_dynamo_ready(value))


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    _, deserializer = _codecs()
    return {key: _plain(deserializer.deserialize(value)) for key, value in item.items()}


def table_name() -> str:
    return settings().table_name


def client() -> Any:
    return aws.client("dynamodb")


def get(key: dict[str, str], consistent: bool = True) -> dict[str, Any] | None:
    response = client().get_item(TableName=table_name(), Key=serialize(key), ConsistentRead=consistent)
    item = response.get("Item")
    return deserialize(item) if item else None


def update(
    key: dict[str, str],
    expression: str,
    names: dict[str, str],
    values: dict[str, Any],
    condition: str | None = None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "TableName": table_name(),
        "Key": serialize(key),
        "UpdateExpression": expression,
        "ReturnValues": "ALL_NEW",
    }
    if names:  # DynamoDB refuses an empty map (moto does not)
        kwargs["ExpressionAttributeNames"] = names
    if values:
        kwargs["ExpressionAttributeValues"] = serialize(values)
    if condition:
        kwargs["ConditionExpression"] = condition
    try:
        response = client().update_item(**kwargs)
    except client().exceptions.ConditionalCheckFailedException:
        raise ConditionFailed() from None
    return deserialize(response["Attributes"])


def query_page(
    partition: str, sort_prefix: str, limit: int, start_after: dict[str, str] | None
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a partition's items whose sort key starts with `sort_prefix` (all if ''), ascending."""
    values = {":pk": partition, ":prefix": sort_prefix} if sort_prefix else {":pk": partition}
    kwargs: dict[str, Any] = {
        "TableName": table_name(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)" if sort_prefix else "pk = :pk",
        "ExpressionAttributeValues": serialize(values),
        "Limit": limit,
        "ConsistentRead": True,
    }
    if start_after:
        kwargs["ExclusiveStartKey"] = serialize(start_after)
    response = client().query(**kwargs)
    items = [deserialize(item) for item in response.get("Items", [])]
    return items, "LastEvaluatedKey" in response


def query_below(partition: str, below: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` items of a partition whose sort key sorts before `below`, ascending."""
    response = client().query(
        TableName=table_name(),
        KeyConditionExpression="pk = :pk AND sk < :below",
        ExpressionAttributeValues=serialize({":pk": partition, ":below": below}),
        Limit=limit,
        ConsistentRead=True,
    )
    return [deserialize(item) for item in response.get("Items", [])]


BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
BATCH_GET_ROUNDS = 5


def batch_get(keys: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Items by key in one BatchGetItem per 100 keys (consistent reads), in no particular order;
    keys not found are missing. Unprocessed keys (throttling) are asked for again, a few times."""
    found: list[dict[str, Any]] = []
    unique = list({(key["pk"], key["sk"]): key for key in keys}.values())
    for start in range(0, len(unique), BATCH_GET_KEYS):
        wanted: dict[str, Any] = {
            table_name(): {
                "Keys": [serialize(key) for key in unique[start : start + BATCH_GET_KEYS]],
                "ConsistentRead": True,
            }
        }
        for _ in range(BATCH_GET_ROUNDS):
            response = client().batch_get_item(RequestItems=wanted)
            found.extend(deserialize(item) for item in response.get("Responses", {}).get(table_name(), []))
            wanted = response.get("UnprocessedKeys") or {}
            if not wanted:
                break
        else:
            raise TransientStorageError("BatchGetItem left keys unprocessed after several rounds")
    return found


class TransientStorageError(Exception):
    """DynamoDB kept refusing part of a request (throttling); the caller's retry finishes it."""


def delete_op(
    key: dict[str, str],
    condition: str | None = None,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"TableName": table_name(), "Key": serialize(key)}
    if condition:
        op["ConditionExpression"] = condition
    if values:
        op["ExpressionAttributeValues"] = serialize(values)
    if names:
        op["ExpressionAttributeNames"] = names
    return {"Delete": op}


def put_op(
    item: dict[str, Any],
    condition: str | None = "attribute_not_exists(pk)",
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"TableName": table_name(), "Item": serialize(item)}
    if condition:
        op["ConditionExpression"] = condition
    if values:
        op["ExpressionAttributeValues"] = serialize(values)
    if names:
        op["ExpressionAttributeNames"] = names
    return {"Put": op}


def update_op(
    key: dict[str, str],
    expression: str,
    names: dict[str, str],
    values: dict[str, Any],
    condition: str | None = "attribute_exists(pk)",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "TableName": table_name(),
        "Key": serialize(key),
        "UpdateExpression": expression,
    }
    if names:  # DynamoDB refuses an empty map (moto does not)
        op["ExpressionAttributeNames"] = names
    if values:
        op["ExpressionAttributeValues"] = serialize(values)
    if condition:
        op["ConditionExpression"] = condition
    return {"Update": op}


BATCH_WRITE_ITEMS = 25  # BatchWriteItem's limit per request


def batch_put(items: list[dict[str, Any]]) -> None:
    """Put items, 25 per BatchWriteItem, unconditionally (imports of new items only); items left
    unprocessed (throttling) are sent again, a few times."""
    for start in range(0, len(items), BATCH_WRITE_ITEMS):
        wanted: dict[str, Any] = {
            table_name(): [
                {"PutRequest": {"Item": serialize(item)}} for item in items[start : start + BATCH_WRITE_ITEMS]
            ]
        }
        for _ in range(BATCH_GET_ROUNDS):
            wanted = client().batch_write_item(RequestItems=wanted).get("UnprocessedItems") or {}
            if not wanted:
                break
        else:
            raise TransientStorageError("BatchWriteItem left items unprocessed after several rounds")


def transact(operations: list[dict[str, Any]]) -> None:
    try:
        client().transact_write_items(TransactItems=operations)
    except client().exceptions.TransactionCanceledException as exc:
        reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
        raise TransactionCancelled(reasons) from None
