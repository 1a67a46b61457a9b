"""One `Idempotency-Key` mechanism for every route that sends something (replies, notifications,
links): a retried request never sends twice, and gets the first outcome again.

The key is claimed with a conditional put before anything is read or sent, so of two concurrent
requests with one key exactly one runs (the other is refused `idempotency_key_in_progress`). The
key is bound to the request (a fingerprint of its scope and validated body): the same key with
another body is refused `idempotency_key_reused`. The outcome (a result, or a refusal) is kept for
24 hours and given again, marked replayed, to any repeat.

What counts as "nothing happened, run it again": a refusal for a missing setting, a provider that
could not be reached, and any storage failure (`errors.is_storage_failure`): the claim is
released. When a provider took a message but the hub could not record it, the outbound path has
checkpointed the message on the claim; the claim stays held, and a repeat finishes the recording
(`resume`) instead of sending again.

Outcomes are domain results and domain errors; chalicelib/http/ turns them into HTTP answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from chalicelib.domain.messages import Message, utcnow
from chalicelib.domain.replies import RefusalKind, Refused, check_idempotency_key, request_fingerprint
from chalicelib.observability import logger
from chalicelib.services.errors import SentNotRecorded, Unavailable, is_storage_failure
from chalicelib.store import idempotency as records

T = TypeVar("T")
# Refusals that say nothing about the request itself: the same request may work later.
RETRYABLE_REFUSALS = (RefusalKind.NOT_CONFIGURED,)


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


@dataclass(frozen=True)
class Done(Generic[T]):
    result: T
    replayed: bool = False


def run(
    key: str | None,
    scope: str,
    request_data: dict[str, Any],
    work: Callable[[Claim | None], T],
    *,
    encode: Callable[[T], dict[str, Any]],
    decode: Callable[[dict[str, Any]], T],
    resume: Callable[[Message], T] | None = None,
    now: datetime | None = None,
) -> Done[T]:
    """Run `work` at most once per key (without a key it simply runs). Raises what `work` raises,
    and for a repeat what the first request raised (`Refused.replayed` set)."""
    if key is None:
        return Done(work(None))
    key = check_idempotency_key(key)
    fingerprint = request_fingerprint(scope, request_data)
    claim = Claim(key, uuid.uuid4().hex)
    try:
        existing = records.claim(key, fingerprint, claim.token, now or utcnow())
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("idempotency claim failed", extra={"error": type(exc).__name__})
        raise Unavailable("the hub's storage is unavailable; nothing was sent; retry") from exc
    if existing is not None:
        return _repeat(existing, fingerprint, encode, decode, resume)
    try:
        result = work(claim)
    except Refused as refused:
        if refused.kind in RETRYABLE_REFUSALS:
            release(claim)
        else:
            _complete(claim.key, claim.token, {"refused": _refusal(refused)})
        raise
    except SentNotRecorded:
        raise  # the claim stays: a repeat finishes the recording (or waits), never sends again
    except BaseException:
        release(claim)
        raise
    _complete(claim.key, claim.token, {"result": encode(result)})
    return Done(result)


def checkpoint(claim: Claim, message: Message) -> None:
    """A provider has the message: keep what must be recorded, so a repeat can finish the work."""
    records.checkpoint(claim.key, claim.token, message.model_dump_json())


def _repeat(
    record: records.IdempotencyRecord,
    fingerprint: str,
    encode: Callable[[T], dict[str, Any]],
    decode: Callable[[dict[str, Any]], T],
    resume: Callable[[Message], T] | None,
) -> Done[T]:
    if record.fingerprint != fingerprint:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; send a new key for a new request",
        )
    if record.state == records.SENT and resume is not None and record.message is not None:
        result = resume(Message.model_validate_json(record.message))  # SentNotRecorded: still not
        _complete(record.key, record.token, {"result": encode(result)})
        return Done(result, replayed=True)
    if record.state != records.COMPLETED:
        raise Refused(
            RefusalKind.IN_PROGRESS, "idempotency_key_in_progress", "a request with this Idempotency-Key is in progress"
        )
    outcome = json.loads(record.response_body or "{}")
    if "refused" in outcome:
        given = outcome["refused"]
        refused = Refused(RefusalKind(given["kind"]), given["code"], given["message"], given.get("details"))
        refused.replayed = True
        raise refused
    return Done(decode(outcome["result"]), replayed=True)


def _refusal(refused: Refused) -> dict[str, Any]:
    return {"kind": refused.kind.value, "code": refused.code, "message": refused.message, "details": refused.details}


def _complete(key: str, token: str, outcome: dict[str, Any]) -> None:
    try:
        records.complete(key, token, json.dumps(outcome, separators=(",", ":")))
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("idempotency record not completed; the key is released", extra={"error": type(exc).__name__})
        release(Claim(key, token))


def release(claim: Claim | None) -> None:
    if claim is None:
        return
    try:
        records.release(claim.key, claim.token)
    except Exception as exc:  # the claim then stays until it expires; the key answers "in progress"
        logger.error("idempotency claim not released", extra={"error": type(exc).__name__})
