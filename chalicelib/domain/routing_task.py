"""The message that hands a stored inbound message to routing."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from chalicelib.domain.messages import Channel


class RoutingTask(BaseModel):
    type: Literal["inbound_message"] = "inbound_message"
    customer_id: str
    conversation_id: str
    message_id: str
    channel: Channel
    received_at: datetime
