"""The table's key design: one table, every item addressed by (pk, sk).

| item                  | pk                              | sk          |
|-----------------------|---------------------------------|-------------|
| identity → customer   | IDENT#<kind>#<normalised value> | IDENT       |
| customer profile      | CUSTOMER#<customer id>          | PROFILE     |
| conversation (thread) | CONV#<conversation id>          | META        |
| thread message        | CONV#<conversation id>          | MSG#<ulid>  |
| provider message id   | PMSG#<provider>#<provider id>   | PMSG        |

The provider-message item is the dedupe marker for inbound messages and the lookup from a
provider's id to the stored message for status callbacks.
"""

from __future__ import annotations

from chalicelib.domain.identity import Identity

Key = dict[str, str]


def identity_key(identity: Identity) -> Key:
    return {"pk": f"IDENT#{identity.key}", "sk": "IDENT"}


def customer_key(customer_id: str) -> Key:
    return {"pk": f"CUSTOMER#{customer_id}", "sk": "PROFILE"}


def conversation_key(conversation_id: str) -> Key:
    return {"pk": f"CONV#{conversation_id}", "sk": "META"}


def message_key(conversation_id: str, message_id: str) -> Key:
    return {"pk": f"CONV#{conversation_id}", "sk": f"MSG#{message_sort_part(message_id)}"}


def message_sort_part(message_id: str) -> str:
    return message_id.removeprefix("msg_")


def provider_message_key(provider: str, provider_message_id: str) -> Key:
    return {"pk": f"PMSG#{provider}#{provider_message_id}", "sk": "PMSG"}


# Routing (see store/routing.py):
# | agent                 | AGENTS                 | AGENT#<agent id>             |
# | waiting task          | TASKS#<queue>          | <9-priority>#<enqueue ulid>  |
# | offer                 | OFFER#<offer id>       | OFFER                        |
AGENTS_PARTITION = "AGENTS"


def agent_key(agent_id: str) -> Key:
    return {"pk": AGENTS_PARTITION, "sk": f"AGENT#{agent_id}"}


def task_partition(queue: str) -> str:
    return f"TASKS#{queue}"


def task_key(queue: str, sort_key: str) -> Key:
    return {"pk": task_partition(queue), "sk": sort_key}


def offer_key(offer_id: str) -> Key:
    return {"pk": f"OFFER#{offer_id}", "sk": "OFFER"}
