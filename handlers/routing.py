"""Routing worker: consumes the routing FIFO queue (one message group per customer).

FIFO order matters within a customer, so a failed record fails the rest of its batch
(SqsFifoPartialProcessor) and SQS redelivers them in order; other customers are unaffected.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain.routing_task import RoutingTask
from chalicelib.observability import logger
from chalicelib.services.routing import handle_routing_task

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def record_handler(record: SQSRecord) -> None:
    handle_routing_task(RoutingTask.model_validate_json(record.body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
