"""moto's Firehose, made to name its S3 objects the way Firehose does.

moto (5.x, `moto/firehose/models.py` `_format_s3_object_path`) takes a destination's `Prefix`
literally and always adds `YYYY/MM/DD/HH/` after it, so the history's prefix
`events/dt=!{timestamp:yyyy-MM-dd}/` would give `events/dt=!{timestamp:yyyy-MM-dd}/2026/12/02/10/...`.
Firehose evaluates the prefix's expressions instead (`!{timestamp:<Java date pattern>}` at the UTC
time it received the records, `!{firehose:random-string}`) and adds `YYYY/MM/DD/HH/` only when the
prefix has no timestamp expression. `install()` gives moto that behaviour, so the local
stack's history lands under `events/dt=YYYY-MM-DD/` as the deployed one does, and the Glue table's
projection describes both.

`install()` also lifts moto's limit of 50 delivery streams (Firehose's default quota per region):
the tests give each test a hub of its own, stream included, inside one emulator.

Both change the emulator inside this process only (the local stack and the tests run moto's
server in-process); chalicelib/ knows nothing of it. What still differs from AWS: moto writes
each PutRecord(Batch) at once as an object of its own (no buffering), never compresses (no
`.gz`), and never uses the error prefix (it fails no delivery).
"""

from __future__ import annotations

import inspect
import re
import uuid
from datetime import UTC, datetime

_EXPRESSION = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
# The Java DateTimeFormatter letters a Firehose prefix uses, as strftime directives.
_JAVA_DATE = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_JAVA_LETTERS = re.compile(r"yyyy|MM|dd|HH|mm|ss|[A-Za-z]+")
_MOTO_PARAMETERS = ["delivery_stream_name", "version_id", "prefix"]


class UnsupportedPrefix(ValueError):
    """A prefix expression this emulation does not evaluate (fail loudly rather than misplace files)."""


def _strftime(java_pattern: str) -> str:
    def directive(match: re.Match[str]) -> str:
        letters = match.group(0)
        if letters not in _JAVA_DATE:
            raise UnsupportedPrefix(f"date pattern letters {letters!r} in !{{timestamp:{java_pattern}}}")
        return _JAVA_DATE[letters]

    return _JAVA_LETTERS.sub(directive, java_pattern.replace("%", "%%"))


def object_key(stream: str, version_id: str, prefix: str, now: datetime) -> str:
    """The S3 key Firehose gives an object it delivers at `now` (UTC) under `prefix`."""
    now = now.astimezone(UTC)
    timed = False

    def evaluate(match: re.Match[str]) -> str:
        nonlocal timed
        namespace, argument = match.groups()
        if namespace == "timestamp":
            timed = True
            return now.strftime(_strftime(argument))
        if (namespace, argument) == ("firehose", "random-string"):
            return uuid.uuid4().hex[:11]
        raise UnsupportedPrefix(f"!{{{namespace}:{argument}}}")

    folder = _EXPRESSION.sub(evaluate, prefix)
    if not timed:  # Firehose's default layout, as moto writes it
        folder += ("" if folder.endswith("/") or not folder else "/") + now.strftime("%Y/%m/%d/%H/")
    return f"{folder}{stream}-{version_id}-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"


# Delivery streams one emulator may hold (moto enforces Firehose's default quota of 50).
MAX_STREAMS = 100_000


def install() -> None:
    """Adapt moto's Firehose in this process: evaluate prefix expressions, allow MAX_STREAMS
    streams. Idempotent."""
    from moto.firehose.models import DeliveryStream

    _evaluate_prefixes()
    DeliveryStream.MAX_STREAMS_PER_REGION = max(DeliveryStream.MAX_STREAMS_PER_REGION, MAX_STREAMS)


def _evaluate_prefixes() -> None:
    from moto.firehose.models import FirehoseBackend

    current = FirehoseBackend.__dict__.get("_format_s3_object_path")
    if getattr(current, "__func__", None) is _moto_object_path:
        return
    original = getattr(FirehoseBackend, "_format_s3_object_path", None)
    if original is None or list(inspect.signature(original).parameters) != _MOTO_PARAMETERS:
        raise RuntimeError(
            "moto's Firehose no longer names objects through _format_s3_object_path: update local/firehose.py"
        )
    FirehoseBackend._format_s3_object_path = staticmethod(_moto_object_path)  # type: ignore[method-assign]


def _moto_object_path(delivery_stream_name: str, version_id: str, prefix: str) -> str:
    return object_key(delivery_stream_name, version_id, prefix, datetime.now(UTC))
