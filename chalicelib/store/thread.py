"""Writes and reads of customers' threads: the ingest transaction and the message list.

Ingest costs, for an identity already known: one GetItem (identity) and one TransactWriteItems
(dedupe marker + message + conversation + customer). A first message from a new identity
writes identity, customer, conversation, dedupe marker and message in one transaction, whose
condition on the identity item makes two racing first messages agree on one customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.domain.analytics import CycleState
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import is_id
from chalicelib.domain.messages import STATUS_RANK, Channel, Direction, EmailThreading, Message, StatusUpdate
from chalicelib.store import analytics as analytics_store
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed, TransactionCancelled


class DuplicateMessage(Exception):
    """The provider message id is already stored (a provider retry)."""


class IdentityTaken(Exception):
    """Another request created a customer for this identity first."""


class Contention(Exception):
    """DynamoDB cancelled the transaction for a concurrent write; safe to retry."""


@dataclass(frozen=True)
class ThreadRef:
    customer_id: str
    conversation_id: str


@dataclass(frozen=True)
class StoredProviderMessage:
    message_id: str
    conversation_id: str
    customer_id: str
    direction: str
    channel: str


def find_identity(identity: Identity) -> ThreadRef | None:
    item = table.get(keys.identity_key(identity))
    if item is None:
        return None
    return ThreadRef(customer_id=item["customer_id"], conversation_id=item["conversation_id"])


def find_provider_message(provider: str, provider_message_id: str) -> StoredProviderMessage | None:
    item = table.get(keys.provider_message_key(provider, provider_message_id))
    if item is None:
        return None
    return StoredProviderMessage(
        message_id=item["message_id"],
        conversation_id=item["conversation_id"],
        customer_id=item["customer_id"],
        direction=item["direction"],
        channel=item["channel"],
    )


def identity_item(identity: Identity, ref: ThreadRef, linked_at: str, linked_by: str) -> dict[str, Any]:
    return {
        **keys.identity_key(identity),
        "type": "identity",
        "kind": identity.kind.value,
        "value": identity.value,
        "customer_id": ref.customer_id,
        "conversation_id": ref.conversation_id,
        "linked_at": linked_at,
        "linked_by": linked_by,
    }


def customer_item(customer: Customer) -> dict[str, Any]:
    data = customer.model_dump(mode="json", exclude_none=True)
    return {**keys.customer_key(customer.id), "type": "customer", **data}


def conversation_item(conversation: Conversation) -> dict[str, Any]:
    data = conversation.model_dump(mode="json", exclude_none=True)
    data["channels"] = set(data.get("channels") or [])
    if not data["channels"]:
        del data["channels"]  # DynamoDB has no empty sets
    return {**keys.conversation_key(conversation.id), "type": "conversation", **data}


def message_item(message: Message) -> dict[str, Any]:
    data = message.model_dump(mode="json", exclude_none=True)
    data["status_rank"] = STATUS_RANK[message.status]
    return {**keys.message_key(message.conversation_id, message.id), "type": "message", **data}


def _provider_message_item(message: Message) -> dict[str, Any]:
    assert message.provider and message.provider_message_id
    return {
        **keys.provider_message_key(message.provider, message.provider_message_id),
        "type": "provider_message",
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "customer_id": message.customer_id,
        "direction": message.direction.value,
        "channel": message.channel.value,
        "created_at": message.created_at.isoformat(),
    }


def create_customer_with_message(
    identity: Identity, customer: Customer, conversation: Conversation, message: Message
) -> None:
    """First message from an unknown identity: everything it creates, or nothing."""
    ref = ThreadRef(customer.id, conversation.id)
    at = message.created_at.isoformat()
    operations = [
        table.put_op(identity_item(identity, ref, at, f"{message.provider}:first_message")),
        table.put_op(_provider_message_item(message)),
        table.put_op(customer_item(customer)),
        table.put_op(conversation_item(conversation)),
        table.put_op(message_item(message)),
    ]
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.failed_at(0):
            raise IdentityTaken() from None
        if exc.failed_at(1):
            raise DuplicateMessage() from None
        if exc.conflicted:
            raise Contention() from None
        raise


def append_inbound(
    ref: ThreadRef,
    message: Message,
    profile_name: str | None,
    reply_token: str | None = None,
    business_address: str | None = None,
) -> None:
    """Add an inbound message to a known customer's thread, with its counters, in one transaction.
    `business_address`: the address the customer wrote to, which answers on the channel come from."""
    at = message.created_at.isoformat()
    conversation_update = table.update_op(
        keys.conversation_key(ref.conversation_id),
        "ADD message_count :one, inbound_count :one, channels :channels "
        "SET last_message_id = :mid, last_message_at = :at, last_channel = :ch, updated_at = :at",
        {},
        {":one": 1, ":channels": {message.channel.value}, ":mid": message.id, ":at": at, ":ch": message.channel.value},
    )
    customer_expression = (
        "SET last_channel = :ch, last_inbound_at = :at, updated_at = :at, last_inbound_by_channel.#inbound_ch = :at"
    )
    customer_names: dict[str, str] = {"#inbound_ch": message.channel.value}
    customer_values: dict[str, Any] = {":ch": message.channel.value, ":at": at}
    if business_address:
        customer_expression += ", business_addresses.#inbound_ch = :to"
        customer_values[":to"] = business_address
    if message.channel is Channel.WHATSAPP:
        customer_expression += ", whatsapp_provider = :provider"
        customer_values[":provider"] = message.provider
    if reply_token:
        customer_expression += ", reply_token = :token"
        customer_values[":token"] = {"channel": message.channel.value, "token": reply_token, "received_at": at}
    if profile_name:
        customer_expression += ", provider_names.#channel = :name"
        customer_names["#channel"] = message.channel.value
        customer_values[":name"] = profile_name
    operations = [
        table.put_op(_provider_message_item(message)),
        table.put_op(message_item(message)),
        conversation_update,
        table.update_op(keys.customer_key(ref.customer_id), customer_expression, customer_names, customer_values),
    ]
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.failed_at(0):
            raise DuplicateMessage() from None
        if exc.conflicted:
            raise Contention() from None
        raise


class AlreadyRecorded(Exception):
    """The outbound message is stored already (a retry of its recording)."""


@dataclass(frozen=True)
class NotificationSend:
    """What goes with a notification's message (store/notifications.py builds it): a pointer from
    the message to the notification, and the notification's new state, conditional on its version."""

    notification_id: str
    pointer: dict[str, Any]
    notification_put: dict[str, Any]
    lost: type[Exception]  # raised when the notification moved on meanwhile


def record_outbound(message: Message, notification: NotificationSend | None = None) -> None:
    """Store a message the hub sent (or tried to: a refused one has no provider id) and count it
    on the conversation, in one transaction. With `notification`, the notification's new state
    goes in the same transaction (`notification.lost` is raised when it moved on: nothing is
    written). Raises AlreadyRecorded when the message is stored already (a retry)."""
    at = message.created_at.isoformat()
    item = message_item(message)
    operations: list[dict[str, Any]] = []
    if message.provider_message_id:
        operations.append(table.put_op(_provider_message_item(message)))
    if notification is not None:
        item["notification_id"] = notification.notification_id
        if message.provider_message_id:
            operations.append(table.put_op(notification.pointer))
    message_at = len(operations)
    operations.append(table.put_op(item))
    operations.append(
        table.update_op(
            keys.conversation_key(message.conversation_id),
            "ADD message_count :one, outbound_count :one, channels :channels "
            "SET #last = :mid, last_message_at = :at, updated_at = :at",
            # Never an empty ExpressionAttributeNames: DynamoDB refuses it (moto does not check).
            {"#last": "last_message_id"},
            {":one": 1, ":channels": {message.channel.value}, ":mid": message.id, ":at": at},
        )
    )
    if notification is not None:
        operations.append(notification.notification_put)
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.failed_at(message_at) or (message.provider_message_id and exc.failed_at(0)):
            raise AlreadyRecorded() from None
        if notification is not None and exc.failed_at(len(operations) - 1):
            raise notification.lost() from None
        raise


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


def apply_status(stored: StoredProviderMessage, update: StatusUpdate) -> Message | None:
    """Move a message's delivery status forward; a late or repeated callback changes nothing."""
    rank = STATUS_RANK[update.status]
    names = {"#status": "status"}
    values: dict[str, Any] = {":status": update.status.value, ":rank": rank, ":at": update.occurred_at.isoformat()}
    expression = "SET #status = :status, status_rank = :rank, status_updated_at = :at"
    if update.error_code:
        expression += ", error_code = :code"
        values[":code"] = update.error_code
    if update.error_message:
        expression += ", error_message = :error"
        values[":error"] = update.error_message
    try:
        item = table.update(
            keys.message_key(stored.conversation_id, stored.message_id),
            expression,
            names,
            values,
            condition="attribute_exists(pk) AND (attribute_not_exists(status_rank) OR status_rank < :rank)",
        )
    except ConditionFailed:
        return None
    return message_from_item(item)


def message_from_item(item: dict[str, Any]) -> Message:
    return Message.model_validate(item)


def conversation_from_item(item: dict[str, Any]) -> Conversation:
    return Conversation.model_validate(item)


@dataclass
class InboundInputs:
    """What routing an inbound message needs, read together (store.analytics: the cycle head)."""

    conversation: Conversation | None
    customer: Customer | None
    message: Message | None
    analytics_head: CycleState | None


def inbound_inputs(conversation_id: str, customer_id: str, message_id: str) -> InboundInputs:
    """The conversation, customer, message and analytics cycle head in one BatchGetItem."""
    if not (is_id(conversation_id, "conv") and is_id(customer_id, "cus") and is_id(message_id, "msg")):
        return InboundInputs(None, None, None, None)
    wanted = {
        "conversation": keys.conversation_key(conversation_id),
        "customer": keys.customer_key(customer_id),
        "message": keys.message_key(conversation_id, message_id),
        "head": analytics_store.head_key(conversation_id),
    }
    found = {(item["pk"], item["sk"]): item for item in table.batch_get(list(wanted.values()))}

    def item(name: str) -> dict[str, Any] | None:
        return found.get((wanted[name]["pk"], wanted[name]["sk"]))

    conversation, customer, message = item("conversation"), item("customer"), item("message")
    return InboundInputs(
        conversation=conversation_from_item(conversation) if conversation else None,
        customer=Customer.model_validate(customer) if customer else None,
        message=message_from_item(message) if message else None,
        analytics_head=analytics_store.head_from_item(item("head")),
    )


def get_conversation(conversation_id: str) -> Conversation | None:
    if not is_id(conversation_id, "conv"):
        return None  # no such id can exist, and DynamoDB refuses oversized keys
    item = table.get(keys.conversation_key(conversation_id))
    return conversation_from_item(item) if item else None


def list_messages(conversation_id: str, limit: int, after_message_id: str | None) -> tuple[list[Message], bool]:
    start = keys.message_key(conversation_id, after_message_id) if after_message_id else None
    items, more = table.query_page(f"CONV#{conversation_id}", "MSG#", limit, start)
    return [message_from_item(item) for item in items], more


def get_message(conversation_id: str, message_id: str) -> Message | None:
    if not is_id(conversation_id, "conv") or not is_id(message_id, "msg"):
        return None
    item = table.get(keys.message_key(conversation_id, message_id))
    return message_from_item(item) if item else None


def resolve_unrouted(conversation_id: str, at: str) -> bool:
    """Resolve a conversation that never reached routing."""
    try:
        table.update(
            keys.conversation_key(conversation_id),
            "SET #status = :resolved, resolved_at = :at, updated_at = :at",
            {"#status": "status"},
            {":resolved": "resolved", ":open": "open", ":at": at},
            condition="#status = :open",
        )
    except ConditionFailed:
        return False
    return True


def record_event(message: Message) -> None:
    """A note in the thread (direction "event"); it does not count as a message sent or received."""
    table.transact([table.put_op(message_item(message))])


def keep_early_status(update: StatusUpdate) -> None:
    """A status for a provider id not recorded yet, kept beside where its lookup item will be."""
    key = keys.provider_message_key(update.provider, update.provider_message_id)
    item = {
        "pk": key["pk"],
        "sk": f"EARLY#{STATUS_RANK[update.status]:02d}#{update.status.value}",
        "type": "early_status",
        **update.model_dump(mode="json", exclude_none=True),
    }
    table.transact([table.put_op(item, condition=None)])


def early_statuses(provider: str, provider_message_id: str) -> list[StatusUpdate]:
    if len(provider_message_id) > 200:
        return []
    items, _ = table.query_page(keys.provider_message_key(provider, provider_message_id)["pk"], "EARLY#", 20, None)
    return [
        StatusUpdate.model_validate({k: v for k, v in item.items() if k not in ("pk", "sk", "type")}) for item in items
    ]
