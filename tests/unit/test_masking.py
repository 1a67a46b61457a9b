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
