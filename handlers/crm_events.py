"""CRM events worker: consumes the CRM events queue (standard SQS) and delivers signed webhooks.

Records are independent, so a failed record is reported alone (partial batch response) and SQS
redelivers only it. A record fails only when a retry or dead letter could not be queued, or the
event history (Firehose, chalicelib.services.event_log) did not take a new event: failed webhook
attempts are retried through their own delayed messages (chalicelib.services.crm_delivery).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib import metrics
from chalicelib.observability import with_lambda_context
from chalicelib.services import crm_delivery

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, lambda_context: Any = None) -> None:
    deadline = None
    if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
        deadline = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000
    crm_delivery.handle_record(json.loads(record.body), deadline=deadline)


@with_lambda_context
@metrics.flushed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
