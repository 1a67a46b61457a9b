"""Idempotency records for API requests that have effects outside the hub (sending a message).

| item                  | pk              | sk     |
|-----------------------|-----------------|--------|
| idempotency record    | IDEMP#<key>     | IDEMP  |

A record moves `in_progress` (claimed by one request, by a conditional put) → `sent` (the provider
answered; the message to store is checkpointed on the record) → `completed` (stored, announced,
and the outcome fixed). It lives 24 hours: `expires_at` (epoch seconds) is the table's TTL
attribute, but TTL deletion is never relied on: a record past `expires_at` counts as absent and
a new claim overwrites it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.store import table
from chalicelib.store.table import ConditionFailed

RETENTION = timedelta(hours=24)

IN_PROGRESS = "in_progress"
SENT = "sent"
COMPLETED = "completed"


def idempotency_key(key: str) -> dict[str, str]:
    return {"pk": f"IDEMP#{key}", "sk": "IDEMP"}


@dataclass(frozen=True)
class IdempotencyRecord:
    key: str
    fingerprint: str
    state: str
    token: str
    created_at: str
    expires_at: int
    response_body: str | None = None  # JSON of the outcome: {"result": ...} or {"refused": ...}
    message: str | None = None  # JSON of the message a provider took, until it is recorded

    def live(self, now: datetime) -> bool:
        return self.expires_at > int(now.timestamp())


def _record(item: dict[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=str(item["idempotency_key"]),
        fingerprint=str(item["fingerprint"]),
        state=str(item["state"]),
        token=str(item["claim_token"]),
        created_at=str(item["created_at"]),
        expires_at=int(item["expires_at"]),
        response_body=item.get("response_body"),
        message=item.get("message"),
    )


def claim(key: str, fingerprint: str, token: str, now: datetime) -> IdempotencyRecord | None:
    """Claim `key` for one request: None when this request holds it now, else the live record
    that holds it (one conditional PutItem; the record comes back with the failed condition)."""
    item = {
        **idempotency_key(key),
        "type": "idempotency",
        "idempotency_key": key,
        "fingerprint": fingerprint,
        "state": IN_PROGRESS,
        "claim_token": token,
        "created_at": now.isoformat(),
        "expires_at": int((now + RETENTION).timestamp()),
    }
    client = table.client()
    for _ in range(3):
        try:
            client.put_item(
                TableName=table.table_name(),
                Item=table.serialize(item),
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                ExpressionAttributeValues=table.serialize({":now": int(now.timestamp())}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            existing = _record(table.deserialize(old)) if old else get(key, now)
            if existing is not None and existing.live(now):
                return existing
            # Deleted or expired between the write and the read: claim again.
    raise ConditionFailed()


def get(key: str, now: datetime) -> IdempotencyRecord | None:
    """The live record for `key`; a record older than 24 hours counts as absent."""
    item = table.get(idempotency_key(key))
    if item is None:
        return None
    record = _record(item)
    return record if record.live(now) else None


def checkpoint(key: str, token: str, message_json: str) -> None:
    """The provider has answered: keep what must be stored, so a retry can finish the work."""
    table.update(
        idempotency_key(key),
        "SET #state = :sent, message = :message",
        {"#state": "state"},
        {":sent": SENT, ":message": message_json, ":token": token, ":claimed": IN_PROGRESS},
        condition="#state = :claimed AND claim_token = :token",
    )


def complete(key: str, token: str, response_body: str) -> bool:
    """Fix the outcome every repeat of the request gets; False if another request completed it."""
    try:
        table.update(
            idempotency_key(key),
            "SET #state = :done, response_body = :body",
            {"#state": "state"},
            {":done": COMPLETED, ":token": token, ":body": response_body},
            condition="attribute_exists(pk) AND claim_token = :token AND #state <> :done",
        )
    except ConditionFailed:
        return False
    return True


def release(key: str, token: str) -> bool:
    """Give the key back (nothing was sent), so a retry with it runs again."""
    client = table.client()
    try:
        client.delete_item(
            TableName=table.table_name(),
            Key=table.serialize(idempotency_key(key)),
            ConditionExpression="claim_token = :token AND #state = :claimed",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=table.serialize({":token": token, ":claimed": IN_PROGRESS}),
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True
