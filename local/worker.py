"""Feeds SQS messages to the handlers/ functions the way Lambda's SQS event source does.

Records carry their own messageId and receipt handle (Chalice's test helper gives every record
the same messageId, which would break partial batch responses). Messages a handler reports in
`batchItemFailures`, or all of them if it raises, stay on the queue and come back after the
visibility timeout, until the redrive policy moves them to the dead-letter queue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.observability import logger


class LambdaContext:
    def __init__(self, function_name: str, timeout_seconds: int = 30) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in attributes.items()
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


class QueueWorker(threading.Thread):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: Callable[[dict[str, Any], Any], Any],
        function_name: str,
        batch_size: int = 10,
    ) -> None:
        super().__init__(name=f"worker-{function_name}", daemon=True)
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self.batches = 0

    def request_stop(self) -> None:
        """Ask the loop to end after the receive or batch under way; returns at once."""
        self._stopping.set()

    def stop(self, timeout: float = 5) -> None:
        """Stop, waiting up to `timeout` seconds for the batch under way. The thread is a daemon:
        one still running a handler after that is abandoned with the process, and its messages
        come back after their visibility timeout, as they would after a Lambda timeout."""
        self.request_stop()
        if timeout > 0 and self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception:
                if self._stopping.is_set():
                    return  # the emulator is going away with the rest of the stack
                logger.exception("worker poll failed", extra={"function": self._function_name})
                self._stopping.wait(1)

    def poll_once(self, wait_seconds: int = 0) -> int:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages or self._stopping.is_set():
            return 0  # received while stopping: left to come back after the visibility timeout
        failed: set[str] = {message["MessageId"] for message in messages}
        try:
            result = self._handler(sqs_event(messages, self._queue_arn), LambdaContext(self._function_name))
            failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        except Exception:
            logger.exception("handler failed the whole batch", extra={"function": self._function_name})
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        self.batches += 1
        return len(messages)
