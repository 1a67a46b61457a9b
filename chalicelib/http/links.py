"""`POST /v1/conversations/{id}/links`: a handoff link and its invitation, as the API answers it."""

from __future__ import annotations

from typing import Any

from chalicelib.api.models import LinkRequest, message_view
from chalicelib.http.answers import Answer, answered, replayed_if
from chalicelib.http.replies import message_answer


def create_link(conversation_id: str, payload: Any, idempotency_key: str | None = None) -> Answer:
    """201 with the code, its expiry, the web chat URL (for web chat links) and the invitation
    sent; 502 when the provider refused the invitation; the API error of any refusal."""
    from chalicelib.services import links

    def call() -> Answer:
        request = LinkRequest.model_validate(payload)
        done = links.create_link(conversation_id, request, idempotency_key)
        invitation = done.result
        headers = replayed_if(done.replayed)
        sent = message_answer(invitation.message, headers)
        if sent.status_code != 201:
            return sent
        view = {
            "code": invitation.code,
            "target": invitation.target.value,
            "expires_at": invitation.expires_at.isoformat().replace("+00:00", "Z"),
            "url": invitation.url,
            "invitation": message_view(invitation.message),
        }
        return Answer(201, view, headers)

    return answered(call)
