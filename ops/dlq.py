"""Inspect and redrive the hub's dead-letter queues.

    python -m ops.dlq list                              every DLQ with its approximate counts
    python -m ops.dlq show routing [--limit 10]         peek at messages without consuming them
    python -m ops.dlq redrive routing [--max N] [--dry-run]
                                                        move messages back to their source queue
    python -m ops.dlq purge timers --yes                delete every message in a DLQ for good

Queues come from infra/definitions.py (QUEUES): name one by its short name (`routing`, `timers`,
`crm-events`), its queue or DLQ name, or its logical id; `--prefix` is prepended to every queue
name (a stage's or a test's prefix). The endpoint is boto3's own configuration, so
`AWS_ENDPOINT_URL=http://127.0.0.1:<port>` (the emulator URL `make run` prints) points it at the
local stack, and nothing set points it at AWS (`--endpoint-url` overrides both).

`show` receives with a short visibility timeout and then makes every message it received visible
again at once (ChangeMessageVisibility 0); it adds one to each message's receive count. On a FIFO
DLQ it shows at most ten messages per message group.

`redrive` moves one message at a time: send it to the source queue, and only once the send
succeeded, delete it from the DLQ. Nothing is ever deleted that was not sent first. If it stops
midway (an error, Ctrl-C), the messages it had received but not moved are made visible again, so
running it again moves the rest; if it is killed outright they come back after the visibility
timeout (`--visibility-timeout`, 60 s). Running it again after it completed moves nothing.

- FIFO (the routing queue): the copy keeps its MessageGroupId (and so its order within the group)
  and gets a MessageDeduplicationId derived from the DLQ message's original deduplication id and
  message id, stable across runs. A rerun within SQS's 5-minute deduplication window after a stop
  between a send and its delete therefore never queues a second copy. (It is deliberately not
  the original id itself: SQS would drop the copy as a duplicate of the original send if that was
  less than 5 minutes ago, and the DLQ message would be deleted with no copy left.)
- Standard queues (timers, CRM events) have no deduplication: a message whose send succeeded but
  whose delete did not is sent again by the rerun, i.e. redrive is at-least-once there. That is
  safe because the consumers are idempotent: a timer re-checks the state it acts on, and a CRM
  delivery repeats the same `webhook-id` that CRMs deduplicate on.

Message attributes (and an X-Ray AWSTraceHeader) are copied; per-message delays are not (timers
re-check their due time and re-delay themselves). SQS's own StartMessageMoveTask is not used: the
emulator (moto 5.2.5) does not implement it, and it would not keep the deduplication guarantee
above; on AWS the console's "Start DLQ redrive" is the alternative for standard queues.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from infra.definitions import QUEUES, QueueDefinition

SHOW_VISIBILITY_SECONDS = 30
REDRIVE_VISIBILITY_SECONDS = 60
RECEIVE_WAIT_SECONDS = 1  # long polling asks every SQS server, so an empty answer means empty
COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")


class UsageError(Exception):
    """A wrong queue name or a missing confirmation: exit status 2."""


class RedriveStopped(Exception):
    def __init__(self, moved: int, cause: BaseException) -> None:
        super().__init__(f"redrive stopped after moving {moved} message(s): {cause}")
        self.moved = moved


@dataclass(frozen=True)
class Pair:
    definition: QueueDefinition
    prefix: str

    @property
    def dlq_name(self) -> str:
        return self.prefix + self.definition.dead_letter_name

    @property
    def source_name(self) -> str:
        return self.prefix + self.definition.name


# --- Queues ------------------------------------------------------------------------------------


def aliases(definition: QueueDefinition) -> set[str]:
    short = definition.name.removesuffix(".fifo").removeprefix("omnihub-")
    names = {short, definition.name, definition.dead_letter_name, definition.logical_id}
    names |= {name.removesuffix(".fifo") for name in names}
    return {name.lower() for name in names}


def resolve(name: str, prefix: str = "") -> Pair:
    key = name.strip().lower()
    if prefix and key.startswith(prefix.lower()):
        key = key[len(prefix) :]
    for definition in QUEUES:
        if key in aliases(definition):
            return Pair(definition, prefix)
    known = ", ".join(sorted(definition.name.removesuffix(".fifo").removeprefix("omnihub-") for definition in QUEUES))
    raise UsageError(f"unknown queue {name!r}: use one of {known} (or a queue's full name)")


def sqs_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    import boto3

    session = boto3.session.Session(region_name=region)
    options: dict[str, Any] = {"region_name": session.region_name or "us-east-1"}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
        if session.get_credentials() is None:  # the local emulator accepts any credentials
            options.update(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
    return session.client("sqs", **options)


def queue_url(sqs: Any, name: str) -> str | None:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        return None


def _existing_url(sqs: Any, name: str) -> str:
    url = queue_url(sqs, name)
    if url is None:
        raise UsageError(f"queue {name} does not exist here (check --prefix and the endpoint)")
    return url


def counts(sqs: Any, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(COUNTS))["Attributes"]
    return {name: int(attributes.get(name, 0)) for name in COUNTS}


# --- Receiving without consuming --------------------------------------------------------------


def _receive(sqs: Any, url: str, count: int, visibility: int) -> list[dict[str, Any]]:
    return list(
        sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    )


def release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                for index, message in enumerate(chunk)
            ],
        )


def peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    try:
        while len(seen) < limit:
            batch = _receive(sqs, url, limit - len(seen), SHOW_VISIBILITY_SECONDS)
            if not batch:
                break
            seen.extend(batch)
    finally:
        release(sqs, url, seen)
    return seen


# --- Redrive -------------------------------------------------------------------------------------


def redrive_deduplication_id(message: dict[str, Any]) -> str:
    """Stable for one DLQ message across runs, new for each time a message is dead-lettered."""
    original = message.get("Attributes", {}).get("MessageDeduplicationId", "")
    digest = hashlib.sha256(f"{original}\n{message['MessageId']}".encode()).hexdigest()
    return f"redrive-{digest}"


def _copy_attributes(attributes: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    copied: dict[str, dict[str, Any]] = {}
    for name, value in (attributes or {}).items():
        entry: dict[str, Any] = {"DataType": value["DataType"]}
        for field in ("StringValue", "BinaryValue"):
            if field in value:
                entry[field] = value[field]
        copied[name] = entry
    return copied


def _send_to_source(sqs: Any, pair: Pair, source_url: str, message: dict[str, Any]) -> None:
    system = message.get("Attributes", {})
    request: dict[str, Any] = {"QueueUrl": source_url, "MessageBody": message["Body"]}
    attributes = _copy_attributes(message.get("MessageAttributes"))
    if attributes:
        request["MessageAttributes"] = attributes
    if system.get("AWSTraceHeader"):
        request["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": system["AWSTraceHeader"]}
        }
    if pair.definition.fifo:
        if not system.get("MessageGroupId"):
            raise ValueError(f"FIFO message {message['MessageId']} has no MessageGroupId")
        request["MessageGroupId"] = system["MessageGroupId"]
        request["MessageDeduplicationId"] = redrive_deduplication_id(message)
    sqs.send_message(**request)


def _delete_message(sqs: Any, url: str, receipt_handle: str) -> None:
    sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt_handle)


def redrive(sqs: Any, pair: Pair, max_messages: int | None = None, visibility: int = REDRIVE_VISIBILITY_SECONDS) -> int:
    """Move up to `max_messages` (all when None) from the DLQ to its source; returns how many.
    Raises RedriveStopped (carrying the count moved) if a send or delete fails."""
    dlq_url = _existing_url(sqs, pair.dlq_name)
    source_url = _existing_url(sqs, pair.source_name)
    moved = 0
    while max_messages is None or moved < max_messages:
        wanted = 10 if max_messages is None else max_messages - moved
        batch = _receive(sqs, dlq_url, wanted, visibility)
        if not batch:
            break
        pending = list(batch)
        try:
            for message in batch:
                _send_to_source(sqs, pair, source_url, message)
                _delete_message(sqs, dlq_url, message["ReceiptHandle"])
                pending.remove(message)
                moved += 1
        except Exception as exc:
            raise RedriveStopped(moved, exc) from exc
        finally:
            if pending:  # in receive order, so a FIFO group's later messages wait for the earlier
                try:
                    release(sqs, dlq_url, pending)
                except Exception as exc:
                    print(f"could not make {len(pending)} message(s) visible again: {exc}", file=sys.stderr)
    return moved


# --- Commands --------------------------------------------------------------------------------


def _iso(milliseconds: str | None) -> str:
    if not milliseconds:
        return "?"
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cmd_list(sqs: Any, args: argparse.Namespace, out: TextIO) -> int:
    missing = 0
    print(f"{'dead-letter queue':<40} {'messages':>8} {'in flight':>9}  source queue", file=out)
    for definition in QUEUES:
        pair = Pair(definition, args.prefix)
        url = queue_url(sqs, pair.dlq_name)
        if url is None:
            missing += 1
            print(f"{pair.dlq_name:<40} {'-':>8} {'-':>9}  {pair.source_name}   (DLQ not found)", file=out)
            continue
        found = counts(sqs, url)
        visible, in_flight = found["ApproximateNumberOfMessages"], found["ApproximateNumberOfMessagesNotVisible"]
        print(f"{pair.dlq_name:<40} {visible:>8} {in_flight:>9}  {pair.source_name}", file=out)
    return 1 if missing else 0


def cmd_show(sqs: Any, args: argparse.Namespace, out: TextIO) -> int:
    pair = resolve(args.queue, args.prefix)
    url = _existing_url(sqs, pair.dlq_name)
    messages = peek(sqs, url, args.limit)
    approximate = counts(sqs, url)["ApproximateNumberOfMessages"]
    print(f"{pair.dlq_name}: showing {len(messages)} of about {approximate} message(s)", file=out)
    for number, message in enumerate(messages, 1):
        system = message.get("Attributes", {})
        line = (
            f"[{number}] id={message['MessageId']} receives={system.get('ApproximateReceiveCount', '?')} "
            f"sent={_iso(system.get('SentTimestamp'))}"
        )
        if "MessageGroupId" in system:
            line += f" group={system['MessageGroupId']} dedupe={system.get('MessageDeduplicationId', '')}"
        print(line, file=out)
        attributes = {
            name: value.get("StringValue", "<binary>") for name, value in message.get("MessageAttributes", {}).items()
        }
        if attributes:
            print(f"    attributes: {attributes}", file=out)
        print(f"    body: {message['Body']}", file=out)
    return 0


def cmd_redrive(sqs: Any, args: argparse.Namespace, out: TextIO) -> int:
    pair = resolve(args.queue, args.prefix)
    if args.dry_run:
        dlq_url = _existing_url(sqs, pair.dlq_name)
        _existing_url(sqs, pair.source_name)
        waiting = counts(sqs, dlq_url)["ApproximateNumberOfMessages"]
        if args.max is not None:
            waiting = min(waiting, args.max)
        print(f"dry run: would move about {waiting} message(s) from {pair.dlq_name} to {pair.source_name}", file=out)
        return 0
    try:
        moved = redrive(sqs, pair, args.max, args.visibility_timeout)
    except RedriveStopped as stopped:
        print(f"moved {stopped.moved} message(s) from {pair.dlq_name} to {pair.source_name}", file=out)
        print(f"error: {stopped.__cause__}; run the same command again to finish", file=sys.stderr)
        return 1
    print(f"moved {moved} message(s) from {pair.dlq_name} to {pair.source_name}", file=out)
    return 0


def cmd_purge(sqs: Any, args: argparse.Namespace, out: TextIO) -> int:
    pair = resolve(args.queue, args.prefix)
    url = _existing_url(sqs, pair.dlq_name)
    if not args.yes:
        raise UsageError(f"purge deletes every message in {pair.dlq_name} for good: add --yes to confirm")
    waiting = counts(sqs, url)["ApproximateNumberOfMessages"]
    sqs.purge_queue(QueueUrl=url)
    print(f"purged {pair.dlq_name} (about {waiting} message(s))", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--prefix",
        default=os.environ.get("OMNIHUB_QUEUE_PREFIX", ""),
        help="prepended to every queue name, e.g. a stage's prefix (env OMNIHUB_QUEUE_PREFIX)",
    )
    common.add_argument("--endpoint-url", help="SQS endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    common.add_argument("--region", help="AWS region (default: boto3's, else us-east-1)")

    main_parser = argparse.ArgumentParser(
        prog="python -m ops.dlq", description="Inspect and redrive omnihub's dead-letter queues."
    )
    commands = main_parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="every DLQ with approximate counts")
    show = commands.add_parser("show", parents=[common], help="peek at a DLQ's messages without consuming them")
    show.add_argument("queue")
    show.add_argument("--limit", type=int, default=10)
    move = commands.add_parser("redrive", parents=[common], help="move a DLQ's messages back to its source queue")
    move.add_argument("queue")
    move.add_argument("--max", type=int, default=None, help="move at most this many")
    move.add_argument("--dry-run", action="store_true", help="only say how many would move; touch nothing")
    move.add_argument("--visibility-timeout", type=int, default=REDRIVE_VISIBILITY_SECONDS)
    purge = commands.add_parser("purge", parents=[common], help="delete every message in a DLQ")
    purge.add_argument("queue")
    purge.add_argument("--yes", action="store_true", help="confirm")
    return main_parser


COMMANDS = {"list": cmd_list, "show": cmd_show, "redrive": cmd_redrive, "purge": cmd_purge}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    out = out or sys.stdout
    try:
        sqs = sqs_client(args.endpoint_url, args.region)
        return COMMANDS[args.command](sqs, args, out)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
