"""Routing worker: consumes the routing FIFO queue (inbound messages grouped per customer,
match requests grouped per agent or customer).

FIFO order matters within a group, so a failed record fails the rest of its group
(SqsFifoPartialProcessor with skip_group_on_error) and SQS redelivers them in order; other
groups are unaffected.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib import metrics
from chalicelib.domain.routing_task import Escalate, HandOff, MatchAgent, MatchTask, RoutingTask, routing_message
from chalicelib.observability import with_lambda_context
from chalicelib.services import routing

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def record_handler(record: SQSRecord) -> None:
    message = routing_message.validate_json(record.body)
    if isinstance(message, RoutingTask):
        # Delivered before: the first attempt may have died after queueing or offering.
        routing.handle_inbound(message, redelivered=int(record.attributes.approximate_receive_count or 1) > 1)
    elif isinstance(message, MatchAgent):
        routing.match_agent(message.agent_id)
    elif isinstance(message, MatchTask):
        routing.match_task_by_key(message.queue, message.sort_key, message.shard)
    elif isinstance(message, HandOff):
        routing.hand_off(message)
    elif isinstance(message, Escalate):
        routing.escalate(message)


@with_lambda_context
@metrics.flushed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
