"""One `Idempotency-Key` mechanism for every route that sends something (replies, notifications,
links): a retried request never sends twice, and gets the first answer again.

The key is claimed with a conditional put before anything is read or sent, so of two concurrent
requests with one key exactly one runs (the other gets 409). The key is bound to the request (a
fingerprint of its scope and validated body): the same key with another body is a 422. When the
work answered, its answer is kept for 24 hours and replayed (same status, same body, with
`Idempotent-Replayed: true`) to any repeat. When nothing left the hub (a 5xx: storage or provider
unreachable) the claim is released and the same key runs again. When a provider took a message
but the hub could not record it, the outbound path has checkpointed the message on the claim; a
repeat then finishes the recording (`resume`) instead of sending again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.domain.messages import utcnow
from chalicelib.domain.replies import ProviderUnavailable, Refused, check_idempotency_key, request_fingerprint
from chalicelib.observability import logger
from chalicelib.services.errors import is_storage_failure
from chalicelib.store import idempotency as records
from chalicelib.store.idempotency import IdempotencyRecord

REPLAYED = {"Idempotent-Replayed": "true"}
RETRY_AFTER = {"Retry-After": "5"}


@dataclass(frozen=True)
class Outcome:
    """An API answer: `body` is JSON (the resource, or `{"error": {"code", "message", ...}}`)."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Something left the hub that is not recorded yet: the key stays held (a repeat resumes or 409s).
    keep_claim: bool = False

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Outcome:
    if status == 503 and headers is None:
        headers = dict(RETRY_AFTER)
    return Outcome(status, {"error": {"code": code, "message": message, **extra}}, headers or {})


def refusal(refused: Refused) -> Outcome:
    return error(refused.status, refused.code, refused.message)


def unreachable(exc: ProviderUnavailable) -> Outcome:
    """Nothing was sent: the same request (and key) may simply be retried."""
    return error(
        503, "temporarily_unavailable", f"{exc.provider} could not be reached ({exc.reason}); nothing was sent; retry"
    )


def sent_not_recorded(exc: Exception, claim: Claim | None, hint: str) -> Outcome:
    """A provider has the message: with a key, the claim stays held so a repeat finishes the work."""
    outcome = error(503, "temporarily_unavailable", f"{exc}; {hint}")
    return Outcome(outcome.status_code, outcome.body, outcome.headers, keep_claim=claim is not None)


def run(
    key: str | None,
    scope: str,
    request_data: dict[str, Any],
    work: Callable[[Claim | None], Outcome],
    *,
    resume: Callable[[IdempotencyRecord], Outcome] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Run `work` at most once per key. Without a key it simply runs."""
    if key is None:
        return work(None)
    try:
        key = check_idempotency_key(key)
    except Refused as refused:
        return refusal(refused)
    fingerprint = request_fingerprint(scope, request_data)
    claim = Claim(key, uuid.uuid4().hex)
    try:
        existing = records.claim(key, fingerprint, claim.token, now or utcnow())
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("idempotency claim failed", extra={"error": type(exc).__name__})
        return error(503, "temporarily_unavailable", "the hub's storage is unavailable; nothing was sent; retry")
    if existing is not None:
        return _repeat(existing, fingerprint, resume)
    try:
        outcome = work(claim)
    except BaseException:
        release(claim)
        raise
    if outcome.keep_claim:
        return outcome
    if outcome.status_code >= 500:
        release(claim)
        return outcome
    try:
        records.complete(key, claim.token, outcome.status_code, response_body=json.dumps(outcome.body))
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        logger.warning("idempotency record not completed", extra={"error": type(exc).__name__})
        release(claim)
    return outcome


def finish(record: IdempotencyRecord, outcome: Outcome) -> Outcome:
    """Complete a resumed record with the answer its repeat got (a replay from now on)."""
    if outcome.status_code < 500 and not outcome.keep_claim:
        try:
            records.complete(record.key, record.token, outcome.status_code, response_body=json.dumps(outcome.body))
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            logger.warning("idempotency record not completed", extra={"error": type(exc).__name__})
    return Outcome(outcome.status_code, outcome.body, {**outcome.headers, **REPLAYED}, outcome.keep_claim)


def checkpoint(claim: Claim, status_code: int, message_json: str) -> None:
    """A provider has the message: keep what must be recorded, so a repeat can finish the work."""
    records.checkpoint(claim.key, claim.token, status_code, message_json)


def _repeat(
    record: IdempotencyRecord, fingerprint: str, resume: Callable[[IdempotencyRecord], Outcome] | None
) -> Outcome:
    if record.fingerprint != fingerprint:
        return error(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request; send a new key for a new request",
        )
    if record.state == records.SENT and resume is not None and record.message is not None:
        return resume(record)
    if record.state != records.COMPLETED:
        return error(409, "idempotency_key_in_progress", "a request with this Idempotency-Key is in progress")
    body = json.loads(record.response_body or "{}")
    return Outcome(int(record.status_code or 500), body, dict(REPLAYED))


def release(claim: Claim | None) -> None:
    if claim is None:
        return
    try:
        records.release(claim.key, claim.token)
    except Exception as exc:  # the claim then stays until it expires; the key answers 409 meanwhile
        logger.error("idempotency claim not released", extra={"error": type(exc).__name__})
