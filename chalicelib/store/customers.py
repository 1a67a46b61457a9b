"""Customer profiles and the identities linked to them."""

from __future__ import annotations

from enum import Enum
from typing import Any

from chalicelib.domain.customers import Customer
from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import is_id
from chalicelib.store import keys, table
from chalicelib.store.table import TransactionCancelled
from chalicelib.store.thread import ThreadRef, find_identity, identity_item


class IdentityBelongsToAnother(Exception):
    def __init__(self, identity: Identity, owner_id: str) -> None:
        super().__init__(f"{identity.kind.value} already belongs to customer {owner_id}")
        self.identity = identity
        self.owner_id = owner_id


class ChangedMeanwhile(Exception):
    """The profile changed between read and write; read again and retry."""


def get_customer(customer_id: str) -> Customer | None:
    if not is_id(customer_id, "cus"):
        return None  # no such id can exist, and DynamoDB refuses oversized keys
    item = table.get(keys.customer_key(customer_id))
    return Customer.model_validate(item) if item else None


def save_profile(
    before: Customer, after: Customer, new_identities: list[Identity], attribute_changes: dict[str, Any]
) -> Customer:
    """Write a profile change and link its new identities, all or nothing.

    `attribute_changes` maps attribute names to new values (None removes the attribute), so
    concurrent edits of different attributes never overwrite each other.
    """
    names: dict[str, str] = {"#name": "name"}
    values: dict[str, Any] = {":before": before.version, ":version": after.version, ":at": after.updated_at.isoformat()}
    sets = ["updated_at = :at", "version = :version", "identities = :identities"]
    values[":identities"] = [identity.model_dump(mode="json") for identity in after.identities]
    removes: list[str] = []
    for field in ("name", "email", "phone", "preferred_channel", "timezone", "quiet_hours"):
        value = getattr(after, field)
        if isinstance(value, Enum):
            value = value.value
        names[f"#{field}"] = field
        if value is None:
            removes.append(f"#{field}")
        else:
            sets.append(f"#{field} = :{field}")
            values[f":{field}"] = value
    for index, (attribute, value) in enumerate(attribute_changes.items()):
        names[f"#a{index}"] = attribute
        if value is None:
            removes.append(f"attributes.#a{index}")
        else:
            sets.append(f"attributes.#a{index} = :a{index}")
            values[f":a{index}"] = value
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    ref = ThreadRef(after.id, after.conversation_id)
    operations = [
        table.put_op(
            identity_item(identity, ref, after.updated_at.isoformat(), "api:patch_customer"),
            condition="attribute_not_exists(pk)",
        )
        for identity in new_identities
    ]
    operations.append(
        table.update_op(
            keys.customer_key(after.id),
            expression,
            names,
            values,
            condition="attribute_exists(pk) AND version = :before",
        )
    )
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        for index, identity in enumerate(new_identities):
            if exc.failed_at(index):
                owner = find_identity(identity)
                if owner is None or owner.customer_id == after.id:
                    raise ChangedMeanwhile() from None
                raise IdentityBelongsToAnother(identity, owner.customer_id) from None
        if exc.failed_at(len(new_identities)) or exc.conflicted:
            raise ChangedMeanwhile() from None
        raise
    stored = get_customer(after.id)
    assert stored is not None
    return stored


def take_reply_token(customer_id: str, token: str) -> bool:
    """Claim a reply token for one send: it is single use, so of two replies only one gets it."""
    try:
        table.update(
            keys.customer_key(customer_id),
            "REMOVE reply_token",
            {"#token": "token"},
            {":token": token},
            condition="reply_token.#token = :token",
        )
    except table.ConditionFailed:
        return False
    return True
