"""Who is in control of a conversation, as pure decisions.

At any time exactly one party controls a conversation: a bot (an integration registered with
`POST /v1/integrations`, or the built-in assistant), the human queue (routing and agents), or
nobody. A bot in control gets the customer's messages and answers them; while it holds the
conversation no routing task exists. Control changes through the switchboard actions:

    pass      the controller hands the conversation to humans or to another bot, now
    offer     the controller offers it to another bot, keeping it until that one accepts
    accept    the bot it was offered to takes it
    release   back to the default controller for its queue and channel
    take      an agent or the CRM takes it from a bot, now

Every change is one write conditional on the control's version, so two racing changes leave one
winner; the loser is refused `control_changed` and may read and retry.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.domain.customers import ASSISTANT, Control, Controller, ControllerKind
from chalicelib.domain.replies import RefusalKind, Refused

__all__ = ["ASSISTANT", "Control", "ControlAction", "ControlRequest", "Controller", "ControllerKind", "decide"]

MAX_METADATA_BYTES = 16 * 1024  # Sunshine Conversations allows 4 KB; the handoff carries more
MAX_REASON_CHARS = 500


class ControlAction(StrEnum):
    PASS = "pass"  # noqa: S105 - an action, not a password
    OFFER = "offer"
    ACCEPT = "accept"
    RELEASE = "release"
    TAKE = "take"


class ControlRequest(BaseModel):
    """`POST /v1/conversations/{id}/control`. `by` names who acts: an integration id, or
    "humans" for an agent or the CRM (the API key's holder)."""

    model_config = ConfigDict(extra="forbid")

    action: ControlAction
    to: str | None = Field(default=None, min_length=1, max_length=64)
    by: str | None = Field(default=None, min_length=1, max_length=64)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata holds at most {MAX_METADATA_BYTES} bytes of JSON; this is {size}")
        return value


def decide(current: Control | None, request: ControlRequest, default: Controller, now: datetime) -> Control:
    """The control state after `request`, or Refused saying why it cannot happen."""
    controller = current.controller if current else default
    version = current.version if current else 0
    acting = Controller.named(request.by) if request.by else None

    def moved(to: Controller, offered: Controller | None = None) -> Control:
        return Control(
            controller=to,
            offered_to=offered,
            since=now if to != controller else (current.since if current else now),
            reason=request.reason,
            metadata=request.metadata,
            version=version + 1,
        )

    if request.action is ControlAction.TAKE:
        if not controller.is_bot and controller.kind is ControllerKind.HUMANS:
            raise Refused(RefusalKind.UNPROCESSABLE, "already_in_control", "humans already control this conversation")
        return moved(Controller(kind=ControllerKind.HUMANS))
    if request.action is ControlAction.RELEASE:
        _must_control(acting, controller)
        return moved(default)
    if request.action is ControlAction.ACCEPT:
        offered = current.offered_to if current else None
        if offered is None or (acting is not None and acting != offered):
            raise Refused(
                RefusalKind.UNPROCESSABLE, "not_offered", "the conversation is not offered to the one accepting it"
            )
        return moved(offered)
    target = _target(request)
    _must_control(acting, controller)
    if target == controller:
        raise Refused(RefusalKind.UNPROCESSABLE, "already_in_control", f"{target.name} already controls it")
    if request.action is ControlAction.OFFER:
        if not target.is_bot:
            raise Refused(RefusalKind.INVALID, "invalid_request", "control is offered to a bot; pass it to humans")
        return moved(controller, offered=target)
    return moved(target)


def _target(request: ControlRequest) -> Controller:
    if not request.to:
        raise Refused(RefusalKind.INVALID, "invalid_request", f"'{request.action.value}' needs 'to': humans or a bot")
    return Controller.named(request.to)


def _must_control(acting: Controller | None, controller: Controller) -> None:
    """A bot acts only on what it controls; the API key's holder (no `by`) may act for anyone."""
    if acting is not None and acting != controller:
        raise Refused(RefusalKind.UNPROCESSABLE, "not_in_control", f"{acting.name} does not control this conversation")
