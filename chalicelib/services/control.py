"""The switchboard: who controls a conversation (domain/control.py), and every change of it.

`POST /v1/conversations/{id}/control` and the routing worker (a new conversation cycle gets its
queue's first controller) change control here, each with one conditional write: of two racing
changes one wins, the other is refused `control_changed`. Each change leaves a note in the thread
and a `conversation.control_changed` event for the CRM (and for the bots involved). When control
passes to humans, a `HandOff` on the routing queue puts the conversation in line (this module
never imports routing: routing calls it).

AWS requests for a change: GetItem conversation, UpdateItem (conditional), TransactWriteItems
(the thread note), SQS SendMessageBatch (the event), and SQS SendMessage (the HandOff) when it
goes to humans.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib import queue
from chalicelib.api.models import conversation_view
from chalicelib.domain.control import ControlAction, ControlRequest, decide
from chalicelib.domain.customers import (
    Control,
    Controller,
    ControllerKind,
    Conversation,
    ConversationStatus,
    thread_note,
)
from chalicelib.domain.ids import new_id
from chalicelib.domain.messages import Channel, utcnow
from chalicelib.domain.replies import RefusalKind, Refused
from chalicelib.domain.routing_task import HandOff
from chalicelib.observability import logger
from chalicelib.services import events
from chalicelib.services.routing_config import routing_config
from chalicelib.store import conversation_state, thread

HELD_BY_HUMANS = (ConversationStatus.WAITING, ConversationStatus.ASSIGNED)


def first_controller(queue_name: str, channel: str) -> Controller:
    """Who takes a new conversation cycle in `queue_name` on `channel` (the routing config)."""
    return Controller.named(routing_config().control.first_controller(queue_name, channel))


def change(conversation_id: str, request: ControlRequest, *, now: datetime | None = None) -> Conversation:
    """Apply one switchboard action; Refused when it cannot happen (or lost a race)."""
    now = now or utcnow()
    conversation = thread.get_conversation(conversation_id)
    if conversation is None:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", f"no conversation '{conversation_id}'")
    channel = (conversation.last_channel or Channel.SMS).value
    default = first_controller(conversation.task_queue or routing_config().default_queue, channel)
    after = decide(conversation.control, request, default, now)
    if after.controller.is_bot and conversation.status in HELD_BY_HUMANS:
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "held_by_humans",
            f"the conversation is {conversation.status.value} for an agent; "
            "resolve or transfer it before a bot takes it",
        )
    preferred = None
    if request.action is ControlAction.TAKE and request.by and request.by != ControllerKind.HUMANS.value:
        preferred = request.by  # an agent took it: first in line for it
    return record(conversation, after, request.action.value, preferred_agent=preferred)


def begin_cycle(conversation: Conversation, queue_name: str, channel: str, now: datetime) -> Conversation:
    """A conversation's new cycle (its first message, or the first after a resolution) goes to its
    queue's first controller. Nothing is written when that changes nothing (humans, by default,
    control a conversation that never had a controller), or for a redelivered message."""
    controller = first_controller(queue_name, channel)
    current = conversation.control
    effective = current.controller if current else Controller(kind=ControllerKind.HUMANS)
    if effective == controller and (current is None or current.offered_to is None):
        return conversation
    version = current.version + 1 if current else 1
    return record(
        conversation, Control(controller=controller, since=now, reason="new conversation", version=version), "start"
    )


def remember(conversation: Conversation, metadata: dict[str, Any]) -> Conversation:
    """The controller keeps notes (the assistant's unanswered count): a new version of the same
    control, without a thread note or an event. Refused `control_changed` when it moved on."""
    current = conversation.control
    if current is None:
        return conversation
    after = current.model_copy(update={"metadata": metadata, "version": current.version + 1})
    try:
        return conversation_state.set_state(conversation.id, "control", _stored(after), current.version)
    except conversation_state.StateChanged:
        raise Refused(
            RefusalKind.IN_PROGRESS, "control_changed", "control of the conversation changed meanwhile"
        ) from None


def record(
    conversation: Conversation, after: Control, action: str, *, preferred_agent: str | None = None
) -> Conversation:
    before = conversation.control
    try:
        changed = conversation_state.set_state(
            conversation.id, "control", _stored(after), before.version if before else 0
        )
    except conversation_state.StateChanged:
        raise Refused(
            RefusalKind.IN_PROGRESS,
            "control_changed",
            "control of the conversation changed meanwhile; read it and retry",
        ) from None
    previous = before.controller if before else None
    moved = previous != after.controller
    if moved:
        _note(changed, previous, after)
    _announce(changed, previous, after, action)
    if moved and after.controller.kind is ControllerKind.HUMANS and action != "start":
        queue.request_routing(
            HandOff(
                conversation_id=changed.id, customer_id=changed.customer_id, preferred_agent=preferred_agent
            ).model_dump_json(),
            changed.customer_id,
        )
    logger.info(
        "control changed",
        extra={"conversation_id": changed.id, "action": action, "to": after.controller.name, "version": after.version},
    )
    return changed


def _stored(control: Control) -> dict[str, Any]:
    return control.model_dump(mode="json", exclude_none=True)


def control_view(control: Control | None) -> dict[str, Any] | None:
    if control is None:
        return None
    return control.model_dump(mode="json")


def _note(conversation: Conversation, previous: Controller | None, after: Control) -> None:
    was = previous.name if previous else "nobody"
    reason = f" ({after.reason})" if after.reason else ""
    text = f"Control passed from {was} to {after.controller.name}{reason}"
    channel = conversation.last_channel or Channel.SMS
    thread.record_event(thread_note(new_id("msg"), conversation.id, conversation.customer_id, channel, text))


def _announce(conversation: Conversation, previous: Controller | None, after: Control, action: str) -> None:
    data = {
        "conversation": {**conversation_view(conversation), "control": control_view(after)},
        "action": action,
        "previous": previous.model_dump(mode="json") if previous else None,
        "controller": after.controller.model_dump(mode="json"),
        "offered_to": after.offered_to.model_dump(mode="json") if after.offered_to else None,
        "reason": after.reason,
        "metadata": after.metadata,
    }
    events.emit_many([("conversation.control_changed", data, f"{conversation.id}:control:{after.version}")])
