"""The one Logger every module uses: structured JSON, with phone numbers and emails masked.

Masking happens on the serialised record, so a number or address is hidden wherever it appears:
in a message, an extra key, or an exception's text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_PHONE = re.compile(r"(?<![\w])(\+?)(\d{1,2})\d{4,11}(\d{2})(?![\w])")


def _mask_phone(match: re.Match[str]) -> str:
    plus, head, tail = match.groups()
    hidden = len(match.group(0)) - len(plus) - len(head) - len(tail)
    return f"{plus}{head}{'*' * hidden}{tail}"


def mask_personal_data(text: str) -> str:
    """Hide emails (`a***@example.com`) and phone-like digit runs of 7+ digits (`+1*******61`)."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(_mask_phone, text)


class MaskingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict) -> str:  # type: ignore[override]
        return mask_personal_data(super().serialize(log))


logger = Logger(service="omnihub", logger_formatter=MaskingFormatter())


def with_lambda_context(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Like Logger.inject_lambda_context, but the keys belong to this thread only: locally every
    function shares one process and one logger, and an HTTP request's log lines must not carry
    a worker's function name."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        logger.thread_safe_append_keys(
            function_name=getattr(context, "function_name", None),
            function_request_id=getattr(context, "aws_request_id", None),
        )
        try:
            return handler(event, context)
        finally:
            logger.thread_safe_clear_keys()

    return wrapper
