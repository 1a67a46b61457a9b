"""Identities bound on the strength of a verified phone number, in one transaction.

A Telegram user who shares their own contact proves they hold that number (channels/telegram.py),
so their Telegram identity and the phone identity belong to one customer. `bind` writes, all or
nothing:

| identity → customer  | IDENT#<kind>#<value>   | IDENT          | linked_by = the update that proved it |
| customer profile     | CUSTOMER#<customer id> | PROFILE        | identity appended, version bumped     |
| identity history     | CUSTOMER#<customer id> | IDHIST#<ulid>  | as a redeemed handoff link writes it  |
| thread note          | CONV#<conversation id> | MSG#<ulid>     | direction "event"                     |
| previous customer    | CUSTOMER#<previous id> | PROFILE        | the identity removed from its list    |

Every write is conditional on what was read before it (the identity's owner, the position of the
identity in the previous customer's list), so a retry of the same update, or a concurrent one,
finds the work done or changed and writes nothing twice: the caller reads again and decides anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import is_id, new_ulid
from chalicelib.domain.messages import Message
from chalicelib.store import keys, table
from chalicelib.store.table import TransactionCancelled
from chalicelib.store.thread import ThreadRef, identity_item, message_item


class Changed(Exception):
    """What the binding was planned on changed meanwhile (or a concurrent write conflicted): read again."""

    def __init__(self, conflicted: bool = False) -> None:
        super().__init__("changed meanwhile" if not conflicted else "transaction conflict")
        self.conflicted = conflicted


@dataclass(frozen=True)
class Owner:
    """The customer an identity belongs to, and what bound it there."""

    customer_id: str
    conversation_id: str
    linked_by: str = ""
    note_message_id: str | None = None

    @property
    def ref(self) -> ThreadRef:
        return ThreadRef(self.customer_id, self.conversation_id)


@dataclass(frozen=True)
class Binding:
    """Bind `identity` to `target`'s customer; `previous` is its owner as read (None: nobody)."""

    identity: Identity
    target: ThreadRef
    previous: Owner | None
    linked_by: str
    note: Message
    history: dict[str, Any] = field(default_factory=dict)
    # Set as the customer's phone number if it has none (a phone identity joining a chat-app customer).
    phone: str | None = None
    # Where the identity sits in the previous customer's `identities` list, to take it out of it.
    previous_index: int | None = None


def owner(identity: Identity) -> Owner | None:
    item = table.get(keys.identity_key(identity))
    if item is None:
        return None
    note = item.get("note_message_id")
    return Owner(
        customer_id=item["customer_id"],
        conversation_id=item["conversation_id"],
        linked_by=str(item.get("linked_by") or ""),
        note_message_id=note if isinstance(note, str) else None,
    )


def position_in_profile(customer_id: str, identity: Identity) -> int | None:
    """Where `identity` is in the customer's `identities` list (the first place), if it is there."""
    if not is_id(customer_id, "cus"):
        return None
    item = table.get(keys.customer_key(customer_id))
    identities = item.get("identities") if item else None
    if not isinstance(identities, list):
        return None
    wanted = identity.model_dump(mode="json")
    for index, entry in enumerate(identities):
        if isinstance(entry, dict) and {"kind": entry.get("kind"), "value": entry.get("value")} == wanted:
            return index
    return None


def bind(binding: Binding, at: str) -> None:
    """Write the binding, or raise Changed if anything it was planned on moved."""
    identity_json = binding.identity.model_dump(mode="json")
    claim = table.put_op(
        {
            **identity_item(binding.identity, binding.target, at, binding.linked_by),
            "note_message_id": binding.note.id,
        },
        condition="attribute_not_exists(pk)" if binding.previous is None else "customer_id = :previous",
    )
    if binding.previous is not None:
        claim["Put"]["ExpressionAttributeValues"] = table.serialize({":previous": binding.previous.customer_id})
    expression = "SET identities = list_append(if_not_exists(identities, :none), :identity), updated_at = :at"
    values: dict[str, Any] = {":none": [], ":identity": [identity_json], ":at": at, ":one": 1}
    if binding.phone:
        expression += ", phone = if_not_exists(phone, :phone)"
        values[":phone"] = binding.phone
    # The version bump makes a concurrent profile edit (which rewrites the list) read again.
    expression += " ADD version :one"
    history = {
        **keys.customer_key(binding.target.customer_id),
        "sk": f"IDHIST#{new_ulid()}",
        "type": "identity_history",
        "identity": identity_json,
        "linked_by": binding.linked_by,
        "at": at,
        **binding.history,
    }
    if binding.previous is not None and binding.previous.customer_id != binding.target.customer_id:
        history["previous_customer_id"] = binding.previous.customer_id
    operations = [
        claim,
        table.update_op(keys.customer_key(binding.target.customer_id), expression, {}, values),
        table.put_op(history),
        table.put_op(message_item(binding.note)),
    ]
    moved_from = binding.previous
    if moved_from and moved_from.customer_id != binding.target.customer_id and binding.previous_index is not None:
        index = binding.previous_index
        operations.append(
            table.update_op(
                keys.customer_key(moved_from.customer_id),
                f"REMOVE identities[{index}] SET updated_at = :at ADD version :one",
                {"#kind": "kind", "#value": "value"},
                {":kind": binding.identity.kind.value, ":value": binding.identity.value, ":at": at, ":one": 1},
                condition=f"identities[{index}].#kind = :kind AND identities[{index}].#value = :value",
            )
        )
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.conflicted:
            raise Changed(conflicted=True) from None
        if exc.failed_at(0) or (len(operations) > 4 and exc.failed_at(4)):
            raise Changed() from None
        raise
