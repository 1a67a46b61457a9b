"""The service-level clocks of a conversation (domain/sla_clocks.py), kept on the conversation item.

Every change is one UpdateItem conditional on the stored version (absent counts as version 0):
two workers (a timer and an agent's reply) can only lose a race, and the loser reads again.
"""

from __future__ import annotations

from chalicelib.domain.customers import Conversation
from chalicelib.domain.sla_clocks import SlaState
from chalicelib.store import keys, table
from chalicelib.store.table import ConditionFailed


class SlaChanged(Exception):
    """The clocks moved on since they were read."""


def set_sla(conversation_id: str, state: SlaState, expected_version: int) -> Conversation:
    condition = "attribute_exists(pk) AND " + (
        "(attribute_not_exists(#sla) OR #sla.#version = :expected)"
        if expected_version == 0
        else "#sla.#version = :expected"
    )
    try:
        item = table.update(
            keys.conversation_key(conversation_id),
            "SET #sla = :sla",
            {"#sla": "sla", "#version": "version"},
            {":sla": state.model_dump(mode="json", exclude_none=True), ":expected": expected_version},
            condition=condition,
        )
    except ConditionFailed:
        raise SlaChanged() from None
    return Conversation.model_validate(item)
