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


# Routing (see store/routing.py and store/agents.py). Nothing here is one partition that every
# assignment writes: an agent is its own partition; the availability index and each queue are
# spread over ROUTING_SHARDS partitions; the directory is written only when agents come and go.
# | agent                 | AGENT#<agent id>               | AGENT                        |
# | agent directory entry | AGENTDIR                       | <agent id>                   |
# | availability entry    | AVAIL#<channel>#<shard>        | <rank: spare, idle, id>      |
# | waiting task          | TASKS#<queue>[#<shard>]        | <9-priority>#<enqueue ulid>  |
# | offer                 | OFFER#<offer id>               | OFFER                        |
AGENT_DIRECTORY = "AGENTDIR"


def agent_key(agent_id: str) -> Key:
    return {"pk": f"AGENT#{agent_id}", "sk": "AGENT"}


def agent_directory_key(agent_id: str) -> Key:
    return {"pk": AGENT_DIRECTORY, "sk": agent_id}


def availability_partition(channel: str, shard: int) -> str:
    return f"AVAIL#{channel}#{shard}"


def availability_key(channel: str, shard: int, rank: str) -> Key:
    return {"pk": availability_partition(channel, shard), "sk": rank}


def task_partition(queue: str, shard: int = 0) -> str:
    """Shard 0 is the partition a queue had before it was sharded, so older tasks read as before."""
    return f"TASKS#{queue}" if shard == 0 else f"TASKS#{queue}#{shard}"


def task_key(queue: str, sort_key: str, shard: int = 0) -> Key:
    return {"pk": task_partition(queue, shard), "sk": sort_key}


def offer_key(offer_id: str) -> Key:
    return {"pk": f"OFFER#{offer_id}", "sk": "OFFER"}
