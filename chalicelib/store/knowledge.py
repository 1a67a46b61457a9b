"""The assistant's knowledge base.

| item                 | pk | sk               |
|----------------------|----|------------------|
| knowledge entry      | KB | ENTRY#<entry id> |
| version and count    | KB | VERSION          |

A knowledge base is configuration: hundreds of entries, written by people, read by every
instance. All of it shares one partition, so reading it whole is a bounded, paged Query (never a
Scan). Every put and delete bumps the version item in the same transaction, so a reader that
caches the entries in memory checks freshness with one GetItem of VERSION. The version item also
counts the entries, which lets a create refuse to grow the knowledge base past MAX_ENTRIES in the
same transaction (no read first).

A reader reads the version before the entries: a write that lands in between gives it entries
newer than its version, never older, so its next freshness check reloads rather than keeping a
stale copy.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.knowledge import KnowledgeEntry
from chalicelib.store import table
from chalicelib.store.table import TransactionCancelled

PARTITION = "KB"
SORT_PREFIX = "ENTRY#"
VERSION_KEY = {"pk": PARTITION, "sk": "VERSION"}
PAGE = 100
MAX_ENTRIES = 1000
ATTEMPTS = 4  # a put races a concurrent create or delete of the same entry at most this often


class KnowledgeBaseFull(Exception):
    """A new entry would take the knowledge base past MAX_ENTRIES."""


def entry_key(entry_id: str) -> dict[str, str]:
    return {"pk": PARTITION, "sk": f"{SORT_PREFIX}{entry_id}"}


def _item(entry: KnowledgeEntry) -> dict[str, Any]:
    return {**entry_key(entry.id), "type": "knowledge_entry", **entry.model_dump(mode="json", exclude_none=True)}


def _entry(item: dict[str, Any]) -> KnowledgeEntry:
    return KnowledgeEntry.model_validate(item)


def _bump(entries_delta: int, condition: str | None = None, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The version item's update: version + 1, entry count + delta (created on first use)."""
    return table.update_op(
        VERSION_KEY,
        "ADD #version :one, #entries :delta",
        {"#version": "version", "#entries": "entries"},
        {":one": 1, ":delta": entries_delta, **(values or {})},
        condition=condition,
    )


def put_entry(entry: KnowledgeEntry) -> bool:
    """Create or replace an entry and bump the version; True when it was created. Raises
    KnowledgeBaseFull when creating it would pass MAX_ENTRIES."""
    for _ in range(ATTEMPTS):
        existed = table.get(entry_key(entry.id)) is not None
        if existed:
            operations = [table.put_op(_item(entry), condition="attribute_exists(pk)"), _bump(0)]
        else:
            operations = [
                table.put_op(_item(entry), condition="attribute_not_exists(pk)"),
                _bump(1, "attribute_not_exists(#entries) OR #entries < :max", {":max": MAX_ENTRIES}),
            ]
        try:
            table.transact(operations)
        except TransactionCancelled as cancelled:
            if cancelled.failed_at(1):
                raise KnowledgeBaseFull() from None
            if cancelled.failed_at(0) or cancelled.conflicted:
                continue  # created or deleted meanwhile: look again
            raise
        return not existed
    raise TransactionCancelled(["TransactionConflict"])


def get_entry(entry_id: str) -> KnowledgeEntry | None:
    item = table.get(entry_key(entry_id))
    return _entry(item) if item else None


def delete_entry(entry_id: str) -> bool:
    """Delete an entry and bump the version; False if there was none."""
    delete = {
        "Delete": {
            "TableName": table.table_name(),
            "Key": table.serialize(entry_key(entry_id)),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    for _ in range(ATTEMPTS):
        try:
            table.transact([delete, _bump(-1)])
        except TransactionCancelled as cancelled:
            if cancelled.failed_at(0):
                return False
            if cancelled.conflicted:
                continue
            raise
        return True
    raise TransactionCancelled(["TransactionConflict"])


def version() -> int:
    """The knowledge base's version: 0 before the first write, then one more per put or delete."""
    item = table.get(VERSION_KEY)
    return int(item.get("version", 0)) if item else 0


def list_page(limit: int, after_id: str | None = None) -> tuple[list[KnowledgeEntry], bool]:
    """Up to `limit` entries in id order after `after_id`; True when more follow."""
    start = entry_key(after_id) if after_id else None
    items, more = table.query_page(PARTITION, SORT_PREFIX, limit, start)
    return [_entry(item) for item in items], more


def list_entries() -> list[KnowledgeEntry]:
    """Every entry, in id order: at most MAX_ENTRIES, read in pages of PAGE."""
    entries: list[KnowledgeEntry] = []
    after: str | None = None
    while len(entries) < MAX_ENTRIES:
        page, more = list_page(PAGE, after)
        entries.extend(page)
        if not more or not page:
            break
        after = page[-1].id
    return entries[:MAX_ENTRIES]
