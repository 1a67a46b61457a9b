"""`POST /v1/notifications`: a proactive notification, as the API answers it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.api.notification_models import NotificationRequest, notification_view
from chalicelib.http.answers import Answer, answered, replayed_if


def create_notification(payload: Any, idempotency_key: str | None = None, *, now: datetime | None = None) -> Answer:
    """202 with the notification (sent, or scheduled for the end of quiet hours) and its Location;
    the API error of any refusal (422 no eligible channel, 502 every provider refused it, 503
    nothing could be reached). Never raises for anything a client can send."""
    from chalicelib.services import notifications

    def call() -> Answer:
        request = NotificationRequest.model_validate(payload)
        done = notifications.create_notification(request, idempotency_key, now=now)
        location = {"Location": f"/v1/notifications/{done.result.id}"}
        return Answer(202, notification_view(done.result), {**location, **replayed_if(done.replayed)})

    return answered(call)
