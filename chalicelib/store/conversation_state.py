"""State a use case keeps on the conversation item under one attribute with its own version (the
control of domain/control.py, the SLA clocks of domain/sla_clocks.py).

Every change is one UpdateItem conditional on the stored version (absent counts as version 0),
so of two racing changes exactly one is written; the loser reads again.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.customers import Conversation
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed


class StateChanged(Exception):
    """The state moved on since it was read: read again."""


def set_state(conversation_id: str, attribute: str, state: dict[str, Any], expected_version: int) -> Conversation:
    """Store `state` (with its own `version`) under `attribute` if the stored one is still at
    `expected_version`; the conversation as it is after."""
    condition = "attribute_exists(pk) AND " + (
        "(attribute_not_exists(#state) OR #state.#version = :expected)"
        if expected_version == 0
        else "#state.#version = :expected"
    )
    try:
        item = table.update(
            keys.conversation_key(conversation_id),
            "SET #state = :state",
            {"#state": attribute, "#version": "version"},
            {":state": state, ":expected": expected_version},
            condition=condition,
        )
    except ConditionFailed:
        raise StateChanged() from None
    return Conversation.model_validate(item)
