"""The control state of a conversation (domain/control.py), kept on the conversation item.

Every change is one UpdateItem conditional on the stored version (absent counts as version 0),
so of two racing changes exactly one is written.
"""

from __future__ import annotations

from chalicelib.domain.customers import Control, Conversation
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed


class ControlChanged(Exception):
    """The control state moved on since it was read: read again."""


def set_control(conversation_id: str, control: Control, expected_version: int) -> Conversation:
    """Store `control` if the stored control is still at `expected_version`; the conversation after."""
    condition = "attribute_exists(pk) AND " + (
        "(attribute_not_exists(#control) OR #control.#version = :expected)"
        if expected_version == 0
        else "#control.#version = :expected"
    )
    try:
        item = table.update(
            keys.conversation_key(conversation_id),
            "SET #control = :control",
            {"#control": "control", "#version": "version"},
            {":control": control.model_dump(mode="json", exclude_none=True), ":expected": expected_version},
            condition=condition,
        )
    except ConditionFailed:
        raise ControlChanged() from None
    return Conversation.model_validate(item)
