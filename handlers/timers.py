"""Timer worker: offer timeouts, task re-checks (sticky wait over, skills relax), agents' offline
grace periods, notifications held for quiet hours, and the reactions that cross use cases (a
failed delivery's notification fallback, a web chat reply to a visitor who left), delivered as
(delayed) SQS messages. Each action is idempotent: a timer that fires for something already
decided does nothing."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib import metrics
from chalicelib.domain.notifications import NotificationDue
from chalicelib.domain.routing_task import AgentGrace, OfferTimeout, TaskRecheck
from chalicelib.domain.timers import DeliveryFailed, NoAgentReply, SlaDue, SurveyDue, WebchatReplySent, timer_message
from chalicelib.observability import with_lambda_context
from chalicelib.services import notifications, offline_fallback, routing, sla, surveys, timers

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    timer = timer_message.validate_json(record.body)
    if not timers.due(timer):
        return
    message = timer.message
    if isinstance(message, OfferTimeout):
        routing.expire_offer(message.offer_id)
    elif isinstance(message, TaskRecheck):
        routing.match_task_by_key(message.queue, message.sort_key, message.shard)
    elif isinstance(message, AgentGrace):
        routing.agent_grace_over(message)
    elif isinstance(message, NotificationDue):
        notifications.handle_timer(message)
    elif isinstance(message, DeliveryFailed):
        notifications.handle_delivery_failed(message)
    elif isinstance(message, WebchatReplySent):
        offline_fallback.handle_timer(message)
    elif isinstance(message, SlaDue):
        sla.handle_due(message)
    elif isinstance(message, NoAgentReply):
        sla.handle_no_reply(message)
    elif isinstance(message, SurveyDue):
        surveys.send_due(message)


@with_lambda_context
@metrics.flushed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
