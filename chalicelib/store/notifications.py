"""Notifications, consent state and the thread writes they need.

| item                              | pk                     | sk      |
|-----------------------------------|------------------------|---------|
| notification                      | NTF#<notification id>  | NTF     |
| outbound message → notification   | NTFMSG#<message id>    | NTFMSG  |
| once-only marker (a confirmation) | ONCE#<purpose>#<id>    | ONCE    |

A notification is written whole, conditional on its `version`, so two workers acting on it (two
status callbacks, a timer and a retry) can only lose a race. A send is one transaction: the
thread message (carrying `notification_id`), its provider-id lookup, the pointer from the message
to the notification (what status callbacks look up), the conversation's counters and the
notification's new state, all or nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import is_id
from chalicelib.domain.notifications import Notification
from chalicelib.store import keys, table, thread
from chalicelib.store.table import ConditionFailed, TransactionCancelled
from chalicelib.store.thread import NotificationSend


class Lost(Exception):
    """Another writer changed the item first (its version moved on, or it already exists)."""


class ChangedMeanwhile(Exception):
    """The customer profile changed between read and write; read again and retry."""


def notification_key(notification_id: str) -> dict[str, str]:
    return {"pk": f"NTF#{notification_id}", "sk": "NTF"}


def message_pointer_key(message_id: str) -> dict[str, str]:
    return {"pk": f"NTFMSG#{message_id}", "sk": "NTFMSG"}


def once_key(purpose: str, key: str) -> dict[str, str]:
    return {"pk": f"ONCE#{purpose}#{key}", "sk": "ONCE"}


def notification_item(notification: Notification) -> dict[str, Any]:
    data = notification.model_dump(mode="json", exclude_none=True)
    return {**notification_key(notification.id), "type": "notification", **data}


# --- Notifications -------------------------------------------------------------------------------


def get_notification(notification_id: str) -> Notification | None:
    if not is_id(notification_id, "ntf"):
        return None  # no such id can exist, and DynamoDB refuses oversized keys
    item = table.get(notification_key(notification_id))
    return Notification.model_validate(item) if item else None


def _put(item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> None:
    client = table.client()
    kwargs: dict[str, Any] = {"TableName": table.table_name(), "Item": table.serialize(item)}
    kwargs["ConditionExpression"] = condition
    if values:
        kwargs["ExpressionAttributeValues"] = table.serialize(values)
    try:
        client.put_item(**kwargs)
    except client.exceptions.ConditionalCheckFailedException:
        raise Lost() from None


def create_notification(notification: Notification) -> None:
    _put(notification_item(notification), "attribute_not_exists(pk)")


def replace_notification(notification: Notification, expected_version: int) -> None:
    """Write the notification's new state if nobody changed it since `expected_version`."""
    _put(notification_item(notification), "version = :expected", {":expected": expected_version})


def send_writes(
    notification: Notification, expected_version: int, message_id: str, conversation_id: str
) -> NotificationSend:
    """What store/thread.record_outbound writes with a notification's message: the notification's
    new state (conditional on `expected_version`; Lost when it moved on) and the pointer from the
    message to it (read by `notification_for_message` when a status callback says it failed)."""
    put = table.put_op(notification_item(notification), condition="version = :expected")
    put["Put"]["ExpressionAttributeValues"] = table.serialize({":expected": expected_version})
    pointer = {
        **message_pointer_key(message_id),
        "type": "notification_message",
        "notification_id": notification.id,
        "message_id": message_id,
        "conversation_id": conversation_id,
    }
    return NotificationSend(notification_id=notification.id, pointer=pointer, notification_put=put, lost=Lost)


def notification_for_message(message_id: str) -> str | None:
    """The notification an outbound message was sent for, if any (one GetItem)."""
    if not is_id(message_id, "msg"):
        return None
    item = table.get(message_pointer_key(message_id))
    return str(item["notification_id"]) if item else None


# --- Customers created by a notification --------------------------------------------------------------


def create_customer(identity: Identity, customer: Customer, conversation: Conversation, linked_by: str) -> None:
    """A customer (with their empty thread) for an identity nobody has yet; thread.IdentityTaken
    if a concurrent request (or a first message) created one first."""
    ref = thread.ThreadRef(customer.id, conversation.id)
    at = customer.created_at.isoformat()
    operations = [
        table.put_op(thread.identity_item(identity, ref, at, linked_by)),
        table.put_op(thread.customer_item(customer)),
        table.put_op(thread.conversation_item(conversation)),
    ]
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.failed_at(0):
            raise thread.IdentityTaken() from None
        raise


# --- Consent --------------------------------------------------------------------------------------------


def set_opted_out(before: Customer, opted_out: dict[str, datetime], at: datetime) -> Customer:
    """Write the customer's whole `opted_out` map, conditional on the version read (optimistic
    locking, as every profile change); ChangedMeanwhile if another change came first."""
    values: dict[str, Any] = {
        ":map": {channel: moment.isoformat() for channel, moment in opted_out.items()},
        ":before": before.version,
        ":version": before.version + 1,
        ":at": max(at, before.updated_at).isoformat(),
    }
    try:
        item = table.update(
            keys.customer_key(before.id),
            "SET #opted = :map, version = :version, updated_at = :at",
            {"#opted": "opted_out"},
            values,
            condition="attribute_exists(pk) AND version = :before",
        )
    except ConditionFailed:
        raise ChangedMeanwhile() from None
    return Customer.model_validate(item)


def claim_once(purpose: str, key: str, at: datetime) -> bool:
    """True the first time (purpose, key) is claimed; False ever after (until released)."""
    try:
        _put({**once_key(purpose, key), "type": "once", "claimed_at": at.isoformat()}, "attribute_not_exists(pk)")
    except Lost:
        return False
    return True


def release_once(purpose: str, key: str) -> None:
    table.client().delete_item(TableName=table.table_name(), Key=table.serialize(once_key(purpose, key)))
