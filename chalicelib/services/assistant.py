"""The built-in assistant (placeholder until the knowledge base lands): it hands every
conversation it is given to humans, saying so."""

from __future__ import annotations

from chalicelib.domain.control import ControlAction, ControlRequest
from chalicelib.domain.customers import ASSISTANT, Conversation, Customer
from chalicelib.domain.messages import Message
from chalicelib.services import control


def respond(customer: Customer, conversation: Conversation, message: Message) -> None:
    control.change(
        conversation.id,
        ControlRequest(action=ControlAction.PASS, to="humans", by=ASSISTANT, reason="the assistant has no answers yet"),
    )
