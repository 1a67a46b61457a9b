"""The routing queue (SQS FIFO): one message group per customer keeps each customer's work in order."""

from __future__ import annotations

import hashlib
import re

from chalicelib import aws
from chalicelib.config import settings

_DEDUPE_ID_SHAPE = re.compile(r"^[\w!\"#$%&'()*+,\-./:;<=>?@\[\\\]^`{|}~]{1,128}$")


def deduplication_id(key: str) -> str:
    """The provider message id when SQS accepts it as a deduplication id, else its SHA-256."""
    if _DEDUPE_ID_SHAPE.match(key):
        return key
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def send_routing_task(body: str, customer_id: str, dedupe_key: str) -> None:
    aws.client("sqs").send_message(
        QueueUrl=settings().routing_queue_url,
        MessageBody=body,
        MessageGroupId=customer_id,
        MessageDeduplicationId=deduplication_id(dedupe_key),
    )


def request_routing(message_json: str, group_id: str) -> None:
    """Ask the routing worker to match again (each request is new: its own deduplication id)."""
    from chalicelib.domain.ids import new_ulid

    aws.client("sqs").send_message(
        QueueUrl=settings().routing_queue_url,
        MessageBody=message_json,
        MessageGroupId=group_id,
        MessageDeduplicationId=new_ulid(),
    )
