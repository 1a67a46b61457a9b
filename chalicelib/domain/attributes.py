"""Free-form customer attributes a CRM sets: any JSON, within what DynamoDB can store."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 10
MAX_BYTES = 32 * 1024
MAX_DIGITS = 38  # DynamoDB numbers keep 38 significant digits
MAX_MAGNITUDE = 1e125


def check_attribute_value(value: Any, depth: int = 0) -> None:
    """Raise ValueError naming the problem when DynamoDB could not store `value` faithfully."""
    if depth > MAX_DEPTH:
        raise ValueError(f"attributes nest at most {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_DIGITS:
            raise ValueError(f"numbers have at most {MAX_DIGITS} digits")
        return
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise ValueError("numbers must be finite and at most 1e125 in size")
        return
    if isinstance(value, list):
        for item in value:
            check_attribute_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError("attribute keys must be non-empty strings")
            check_attribute_value(item, depth + 1)
        return
    raise ValueError(f"unsupported attribute value of type {type(value).__name__}")


def check_attributes(attributes: dict[str, Any]) -> None:
    for value in attributes.values():
        check_attribute_value(value)
    if len(json.dumps(attributes, ensure_ascii=False).encode()) > MAX_BYTES:
        raise ValueError(f"attributes are limited to {MAX_BYTES // 1024} KB per request")
