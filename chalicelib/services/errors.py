"""Outcomes of use cases that the edge turns into HTTP answers."""

from __future__ import annotations

from typing import Any


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


class Unavailable(Exception):
    """Try again later: nothing is lost, the retry completes the work. `details` adds data for
    programs (JSON) to the answer."""

    def __init__(self, message: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class InvalidRequest(ValueError):
    """The request is well-formed but asks for something that cannot be done as asked."""


class SentNotRecorded(Unavailable):
    """A provider took a message but the hub could not record it: never send it again blindly."""


class EventQueueUnavailable(RuntimeError):
    """Events could not be queued; the caller's retry emits them again (same ids)."""


def is_storage_failure(exc: BaseException) -> bool:
    """The one rule for what a caller may retry: an AWS failure (DynamoDB, SQS) or a lost
    conditional write, as opposed to a bug. Imported lazily: botocore is heavy on a cold start."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.store.table import ConditionFailed, TransactionCancelled

    return isinstance(exc, BotoCoreError | ClientError | EventQueueUnavailable | ConditionFailed | TransactionCancelled)
