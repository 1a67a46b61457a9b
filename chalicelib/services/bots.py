"""A customer's message while a bot controls the conversation.

An integration (a bot registered with `POST /v1/integrations`) gets the message as a signed
`message.created` webhook, delivered by the CRM-events worker with the same retries and dead-letter
queue as CRM events; it answers with `POST /v1/conversations/{id}/messages` as a bot sender and
passes control on with `POST /v1/conversations/{id}/control`. A controller that no longer exists
(the integration was deleted) hands the conversation to humans, so no customer is left unheard.

AWS requests for a message to an integration in control: GetItem (the integration), SQS
SendMessage (the targeted event); the CRM's message.created is counted for analytics by the
routing worker (GetItem + TransactWriteItems, services/analytics.py).
"""

from __future__ import annotations

from chalicelib.api.models import conversation_view, customer_view, message_view
from chalicelib.domain.control import ControlAction, ControlRequest
from chalicelib.domain.customers import ASSISTANT, Controller, Conversation, Customer
from chalicelib.domain.messages import Message
from chalicelib.observability import logger
from chalicelib.services import assistant, control, events, integrations


def deliver(controller: Controller, customer: Customer, conversation: Conversation, message: Message) -> None:
    if controller.integration_id == ASSISTANT:
        assistant.respond(customer, conversation, message)
        return
    integration_id = str(controller.integration_id)
    if integrations.find_integration(integration_id) is None:
        logger.warning("the bot in control is gone; humans take over", extra={"integration_id": integration_id})
        control.change(
            conversation.id,
            ControlRequest(action=ControlAction.PASS, to="humans", reason=f"integration {integration_id} is gone"),
        )
        return
    data = {
        "customer": customer_view(customer),
        "conversation": conversation_view(conversation),
        "message": message_view(message),
    }
    events.emit_to_integration(integration_id, "message.created", data, message.id)
