"""Idempotency records for API requests that have effects outside the hub (sending a message).

| item                  | pk              | sk     |
|-----------------------|-----------------|--------|
| idempotency record    | IDEMP#<key>     | IDEMP  |

A record moves `in_progress` (claimed by one request, by a conditional put) → `sent` (the provider
answered; the message to store is checkpointed on the record) → `completed` (stored, announced,
and the answer fixed). It lives 24 hours: `expires_at` (epoch seconds) is the table's TTL
attribute, but TTL deletion is never relied on: a record past `expires_at` counts as absent and
a new claim overwrites it.

The two thread functions at the end are what the reply flow needs beyond store/thread.py (an
outbound message the provider gave no id, and the customer's latest email); they belong there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.messages import Channel, Direction, EmailThreading, Message
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed, TransactionCancelled

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
    status_code: int | None = None
    response_body: str | None = None  # JSON of an answer that carries no message (a refusal)
    message: str | None = None  # JSON of the thread message the request sent (answers derive from it)

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
        status_code=int(item["status_code"]) if item.get("status_code") is not None else None,
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


def checkpoint(key: str, token: str, status_code: int, message_json: str) -> None:
    """The provider has answered: keep what must be stored, so a retry can finish the work."""
    table.update(
        idempotency_key(key),
        "SET #state = :sent, status_code = :status, message = :message",
        {"#state": "state"},
        {":sent": SENT, ":status": status_code, ":message": message_json, ":token": token, ":claimed": IN_PROGRESS},
        condition="#state = :claimed AND claim_token = :token",
    )


def complete(
    key: str,
    token: str,
    status_code: int,
    *,
    response_body: str | None = None,
    message_json: str | None = None,
) -> bool:
    """Fix the answer every repeat of the request gets; False if another request completed it."""
    sets = ["#state = :done", "status_code = :status"]
    values: dict[str, Any] = {":done": COMPLETED, ":status": status_code, ":token": token}
    if response_body is not None:
        sets.append("response_body = :body")
        values[":body"] = response_body
    if message_json is not None:
        sets.append("message = :message")
        values[":message"] = message_json
    try:
        table.update(
            idempotency_key(key),
            "SET " + ", ".join(sets),
            {"#state": "state"},
            values,
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


# --- Thread reads and writes of the reply flow (to move into store/thread.py) -----------------


def record_outbound_without_provider_id(message: Message) -> bool:
    """Store an outbound message the provider gave no id (it refused it), and count it on the
    conversation; False if it was already stored (a retry). Like thread.record_outbound, minus
    the provider-id lookup item."""
    from chalicelib.store.thread import message_item

    at = message.created_at.isoformat()
    try:
        table.transact(
            [
                table.put_op(message_item(message)),
                table.update_op(
                    keys.conversation_key(message.conversation_id),
                    "ADD message_count :one, outbound_count :one, channels :channels "
                    "SET last_message_id = :mid, last_message_at = :at, updated_at = :at",
                    {},
                    {":one": 1, ":channels": {message.channel.value}, ":mid": message.id, ":at": at},
                ),
            ]
        )
    except TransactionCancelled as exc:
        if exc.failed_at(0):
            return False
        raise
    return True


@dataclass(frozen=True)
class LatestEmail:
    message_id: str
    subject: str | None
    email: EmailThreading | None


def latest_inbound_email(conversation_id: str, page_size: int = 50, max_pages: int = 4) -> LatestEmail | None:
    """The customer's most recent inbound email in the thread, newest first, reading at most
    `max_pages` pages (only the attributes needed)."""
    client = table.client()
    kwargs: dict[str, Any] = {
        "TableName": table.table_name(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "FilterExpression": "#direction = :inbound AND #channel = :email",
        "ProjectionExpression": "#id, #subject, #email",
        "ExpressionAttributeNames": {
            "#direction": "direction",
            "#channel": "channel",
            "#id": "id",
            "#subject": "subject",
            "#email": "email",
        },
        "ExpressionAttributeValues": table.serialize(
            {
                ":pk": f"CONV#{conversation_id}",
                ":prefix": "MSG#",
                ":inbound": Direction.INBOUND.value,
                ":email": Channel.EMAIL.value,
            }
        ),
        "ScanIndexForward": False,
        "Limit": page_size,
        "ConsistentRead": True,
    }
    for _ in range(max_pages):
        response = client.query(**kwargs)
        items = response.get("Items") or []
        if items:
            item = table.deserialize(items[0])
            threading = item.get("email")
            return LatestEmail(
                message_id=str(item["id"]),
                subject=item.get("subject"),
                email=EmailThreading.model_validate(threading) if threading else None,
            )
        if "LastEvaluatedKey" not in response:
            return None
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return None
