"""Handoff links and the identity history they write.

| link             | LINK#<code>             | LINK           |
| identity history | CUSTOMER#<customer id>  | IDHIST#<ulid>  |
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.identity import Identity
from chalicelib.domain.ids import new_ulid
from chalicelib.domain.links import Link
from chalicelib.store import keys, table
from chalicelib.store.table import TransactionCancelled
from chalicelib.store.thread import ThreadRef, find_identity, identity_item


class CodeTaken(Exception):
    pass


class AlreadyRedeemed(Exception):
    pass


def link_key(code: str) -> dict[str, str]:
    return {"pk": f"LINK#{code}", "sk": "LINK"}


def put_link(link: Link) -> None:
    try:
        item = {**link_key(link.code), "type": "link", **link.model_dump(mode="json", exclude_none=True)}
        table.transact([table.put_op(item)])
    except TransactionCancelled:
        raise CodeTaken() from None


def get_link(code: str) -> Link | None:
    if len(code) > 16:
        return None
    item = table.get(link_key(code))
    return Link.model_validate(item) if item else None


def redeem(link: Link, identity: Identity, now: datetime) -> str | None:
    """Bind `identity` to the link's customer, once. Returns the identity's previous customer, if any."""
    previous = find_identity(identity)
    at = now.isoformat()
    ref = ThreadRef(link.customer_id, link.conversation_id)
    history: dict[str, Any] = {
        **keys.customer_key(link.customer_id),
        "sk": f"IDHIST#{new_ulid()}",
        "type": "identity_history",
        "identity": identity.model_dump(mode="json"),
        "linked_by": link.created_by,
        "link_code": link.code,
        "target": link.target.value,
        "at": at,
    }
    if previous and previous.customer_id != link.customer_id:
        history["previous_customer_id"] = previous.customer_id
    operations = [
        table.update_op(
            link_key(link.code),
            "SET redeemed_at = :at, redeemed_identity = :identity",
            {},
            {":at": at, ":identity": identity.key},
            condition="attribute_exists(pk) AND attribute_not_exists(redeemed_at) AND expires_at > :at",
        ),
        # Unconditional: the code proves the person holds both identities, so it moves to this customer.
        table.put_op(identity_item(identity, ref, at, f"link:{link.code}:{link.created_by}"), condition=None),
        table.put_op(history, condition=None),
    ]
    if previous is None or previous.customer_id != link.customer_id:
        operations.append(
            table.update_op(
                keys.customer_key(link.customer_id),
                "SET identities = list_append(if_not_exists(identities, :none), :identity), updated_at = :at",
                {},
                {":none": [], ":identity": [identity.model_dump(mode="json")], ":at": at},
            )
        )
    try:
        table.transact(operations)
    except TransactionCancelled as exc:
        if exc.failed_at(0):
            raise AlreadyRedeemed() from None
        raise
    return history.get("previous_customer_id")


def identity_history(customer_id: str) -> list[dict[str, Any]]:
    items, _ = table.query_page(f"CUSTOMER#{customer_id}", "IDHIST#", 200, None)
    return [{k: v for k, v in item.items() if k not in ("pk", "sk", "type")} for item in items]
