"""Given log records carrying personal data, when serialised, phone numbers and emails are masked."""

from __future__ import annotations

import io
import json
import logging

from aws_lambda_powertools import Logger

from chalicelib.observability import MaskingFormatter, mask_personal_data


def test_emails_and_phone_numbers_are_masked_wherever_they_appear() -> None:
    text = "from whatsapp:+15017122661 and Ada.Lovelace@Example.com, wa_id 15017122661"
    masked = mask_personal_data(text)
    assert "5017122661" not in masked
    assert "Lovelace" not in masked
    assert "A***@Example.com" in masked
    assert "+15*******61" in masked


def test_timestamps_and_ids_are_left_alone() -> None:
    text = "2026-11-23 10:42:18,420+0000 msg_01M83ZZQ18DJ6JPD2HH13HH33W status 200 took 157.5 ms SM1234"
    assert mask_personal_data(text) == text


def test_the_logger_masks_messages_extras_and_exceptions() -> None:
    stream = io.StringIO()
    logger = Logger(
        service="masking-test", logger_formatter=MaskingFormatter(), logger_handler=logging.StreamHandler(stream)
    )
    try:
        raise ValueError("bad sender ada@example.com")
    except ValueError:
        logger.exception("failed for +447911123456", extra={"to": "whatsapp:+15017122661"})
    record = json.loads(stream.getvalue())
    assert "+447911123456" not in stream.getvalue()
    assert "ada@example.com" not in stream.getvalue()
    assert "15017122661" not in record["to"]
    assert record["message"].startswith("failed for +44")


def test_a_workers_lambda_context_stays_out_of_other_threads_logs() -> None:
    import threading

    from chalicelib.observability import logger as hub_logger
    from chalicelib.observability import with_lambda_context

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter())
    hub_logger.addHandler(handler)
    inside, outside = threading.Event(), threading.Event()

    class Context:
        function_name = "omnihub-routing"
        aws_request_id = "req-1"

    @with_lambda_context
    def worker(event: object, context: object) -> None:
        hub_logger.info("from the worker")
        inside.set()
        outside.wait(5)

    thread = threading.Thread(target=worker, args=({}, Context()))
    thread.start()
    inside.wait(5)
    hub_logger.info("from an http request")
    outside.set()
    thread.join(5)
    hub_logger.removeHandler(handler)

    records = {r["message"]: r for r in map(json.loads, stream.getvalue().splitlines())}
    assert records["from the worker"]["function_name"] == "omnihub-routing"
    assert "function_name" not in records["from an http request"]
