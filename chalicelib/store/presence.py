"""When a web chat visitor's page last polled a conversation: one attribute on the conversation item.

| conversation | CONV#<conversation id> | META | webchat_last_seen_at = ISO time, UTC, milliseconds |

The moment is stored as text of one fixed width, so the stored strings compare as the moments do
and a condition can keep the writes of every process to one per interval.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.store import keys, table

LAST_SEEN_ATTRIBUTE = "webchat_last_seen_at"


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def record_last_seen(conversation_id: str, now: datetime, unless_after: datetime) -> bool:
    """Record `now` as the conversation's last-seen moment, unless one after `unless_after` is
    already recorded (or the conversation does not exist). True if it was written."""
    try:
        table.update(
            keys.conversation_key(conversation_id),
            "SET #seen = :now",
            {"#seen": LAST_SEEN_ATTRIBUTE},
            {":now": _text(now), ":cutoff": _text(unless_after)},
            condition="attribute_exists(pk) AND (attribute_not_exists(#seen) OR #seen < :cutoff)",
        )
    except table.ConditionFailed:
        return False
    return True


def read_last_seen(conversation_id: str) -> datetime | None:
    """The last-seen moment recorded for the conversation (UTC), if any: one GetItem."""
    item = table.get(keys.conversation_key(conversation_id))
    value = (item or {}).get(LAST_SEEN_ATTRIBUTE)
    return datetime.fromisoformat(str(value)) if value else None
