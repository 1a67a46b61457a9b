"""`POST /v1/conversations/{id}/messages`: an agent's reply, as the API answers it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.api.models import message_view
from chalicelib.api.reply_models import ReplyRequest
from chalicelib.domain.messages import DeliveryStatus, Message
from chalicelib.http.answers import Answer, answered, replayed_if


def send_reply(
    conversation_id: str, payload: Any, idempotency_key: str | None = None, *, now: datetime | None = None
) -> Answer:
    """201 with the message; 502 when the provider refused it (stored as failed); the API error
    of any refusal. Never raises for anything a client can send or a provider can answer."""
    from chalicelib.services import replies

    def call() -> Answer:
        request = ReplyRequest.model_validate(payload)
        done = replies.send_reply(conversation_id, request, idempotency_key, now=now)
        return message_answer(done.result, replayed_if(done.replayed))

    return answered(call)


def message_answer(message: Message, headers: dict[str, str] | None = None) -> Answer:
    """201 with a message a provider took, or 502 when it refused it for good."""
    if message.status is DeliveryStatus.FAILED and message.provider_message_id is None:
        text = (
            f"{message.provider} refused the message (error {message.error_code}: {message.error_message}); "
            f"it is stored as {message.id} with status failed"
        )
        return Answer(502, {"error": {"code": "provider_error", "message": text}}, headers or {})
    return Answer(201, message_view(message), headers or {})
