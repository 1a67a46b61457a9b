"""The dead-letter CLI (`python -m ops.dlq`) against the AWS emulator: list, show without consuming,
redrive back to the source queue with FIFO group and attributes intact, safe to run twice, and
complete after a stop between a send and its delete."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import dlq
from tests.conftest import Hub

ROOT = Path(__file__).parents[2]
ROUTING_DLQ = "omnihub-routing-dlq.fifo"
TIMERS_DLQ = "omnihub-timers-dlq"


@pytest.fixture(autouse=True)
def short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq, "RECEIVE_WAIT_SECONDS", 0)


def prefix_of(hub: Hub) -> str:
    return hub.table_name.removesuffix("omnihub")


def run(hub: Hub, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = dlq.main([*argv, "--prefix", prefix_of(hub)], out=out)
    return status, out.getvalue()


def url(hub: Hub, name: str) -> str:
    return str(hub.client("sqs").get_queue_url(QueueName=prefix_of(hub) + name)["QueueUrl"])


def visible(hub: Hub, queue_url: str) -> int:
    attributes = hub.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def drain(hub: Hub, queue_url: str) -> list[dict[str, Any]]:
    """Receive (and leave invisible) everything on a queue."""
    sqs, received = hub.client("sqs"), []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        received.extend(batch)
    return received


def dead_letter_routing_tasks(hub: Hub, tasks: list[tuple[str, str]]) -> None:
    """Send (group, body) tasks to the routing FIFO queue and fail each until SQS's redrive policy
    (maxReceiveCount 5) moves it to the dead-letter queue, as a failing worker would (one at a
    time, so the dead-letter queue holds them in the order given)."""
    sqs = hub.client("sqs")
    dead_letters = url(hub, ROUTING_DLQ)
    for number, (group, body) in enumerate(tasks):
        sqs.send_message(
            QueueUrl=hub.routing_queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=f"twilio:SM{number}",
            MessageAttributes={"origin": {"DataType": "String", "StringValue": f"test-{number}"}},
        )
        for _ in range(10):
            sqs.receive_message(QueueUrl=hub.routing_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            if visible(hub, dead_letters) == number + 1:
                break
        else:
            raise AssertionError(f"task {number} never reached the dead-letter queue")


def dead_letter_timers(hub: Hub, count: int) -> None:
    for number in range(count):
        hub.client("sqs").send_message(
            QueueUrl=url(hub, TIMERS_DLQ),
            MessageBody=json.dumps({"timer": number}),
            MessageAttributes={"attempt": {"DataType": "Number", "StringValue": str(number)}},
        )


TASKS = [("cus_a", '{"task": "a1"}'), ("cus_b", '{"task": "b1"}'), ("cus_a", '{"task": "a2"}')]


def test_list_counts_every_dead_letter_queue(hub: Hub) -> None:
    dead_letter_routing_tasks(hub, TASKS)
    dead_letter_timers(hub, 2)

    status, output = run(hub, "list")

    assert status == 0
    rows = {line.split()[0]: line.split()[1:3] for line in output.splitlines()[1:]}
    prefix = prefix_of(hub)
    assert rows == {
        prefix + ROUTING_DLQ: ["3", "0"],
        prefix + TIMERS_DLQ: ["2", "0"],
        prefix + "omnihub-crm-events-dlq": ["0", "0"],
    }


def test_show_peeks_without_consuming(hub: Hub) -> None:
    dead_letter_routing_tasks(hub, TASKS)

    status, output = run(hub, "show", "routing", "--limit", "10")

    assert status == 0
    assert "showing 3 of about 3" in output
    for group, body in TASKS:
        assert f"group={group}" in output and f"body: {body}" in output
    assert "receives=" in output and "origin" in output
    # Everything is visible again at once: nothing was consumed
    assert visible(hub, url(hub, ROUTING_DLQ)) == 3
    assert len(drain(hub, url(hub, ROUTING_DLQ))) == 3


def test_redrive_moves_fifo_tasks_back_intact_and_twice_moves_nothing(hub: Hub) -> None:
    dead_letter_routing_tasks(hub, TASKS)
    dead_letters = url(hub, ROUTING_DLQ)

    # A dry run touches nothing
    status, output = run(hub, "redrive", "routing", "--dry-run")
    assert status == 0 and "would move about 3" in output
    assert visible(hub, dead_letters) == 3 and visible(hub, hub.routing_queue_url) == 0

    status, output = run(hub, "redrive", "routing")
    assert status == 0 and "moved 3 message(s)" in output

    assert visible(hub, dead_letters) == 0
    moved = drain(hub, hub.routing_queue_url)
    group_a = [m["Body"] for m in moved if m["Attributes"]["MessageGroupId"] == "cus_a"]
    assert group_a == ['{"task": "a1"}', '{"task": "a2"}']  # in order within the group
    assert sorted((m["Attributes"]["MessageGroupId"], m["Body"]) for m in moved) == sorted(TASKS)
    assert sorted(m["MessageAttributes"]["origin"]["StringValue"] for m in moved) == ["test-0", "test-1", "test-2"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in moved)  # a fresh start

    assert run(hub, "redrive", "routing") == (
        0,
        f"moved 0 message(s) from {prefix_of(hub)}{ROUTING_DLQ} to {prefix_of(hub)}omnihub-routing.fifo\n",
    )


def test_a_stop_between_send_and_delete_then_a_rerun_leaves_exactly_one_copy(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letter_routing_tasks(hub, [("cus_a", '{"task": "a1"}'), ("cus_a", '{"task": "a2"}')])
    real_delete = dlq._delete_message
    failures = iter([RuntimeError("killed between the send and the delete")])

    def delete_failing_once(sqs: Any, queue_url: str, receipt_handle: str) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_delete(sqs, queue_url, receipt_handle)

    monkeypatch.setattr(dlq, "_delete_message", delete_failing_once)

    status, output = run(hub, "redrive", "routing")
    assert status == 1 and "moved 0 message(s)" in output
    # The first task was sent but is still a dead letter (visible again); the second was not sent
    assert visible(hub, url(hub, ROUTING_DLQ)) == 2

    status, output = run(hub, "redrive", "routing")
    assert status == 0 and "moved 2 message(s)" in output

    moved = drain(hub, hub.routing_queue_url)
    assert [m["Body"] for m in moved] == ['{"task": "a1"}', '{"task": "a2"}']
    assert visible(hub, url(hub, ROUTING_DLQ)) == 0


def test_redrive_of_a_standard_queue_honours_max_and_keeps_attributes(hub: Hub) -> None:
    dead_letter_timers(hub, 3)

    assert run(hub, "redrive", "timers", "--max", "2")[0] == 0
    assert visible(hub, url(hub, TIMERS_DLQ)) == 1
    status, output = run(hub, "redrive", "omnihub-timers-dlq")
    assert status == 0 and "moved 1 message(s)" in output

    timer_queue = hub.resources["TIMER_QUEUE_URL"]
    moved = drain(hub, timer_queue)
    assert sorted(json.loads(m["Body"])["timer"] for m in moved) == [0, 1, 2]
    assert {m["MessageAttributes"]["attempt"]["DataType"] for m in moved} == {"Number"}
    assert visible(hub, url(hub, TIMERS_DLQ)) == 0


def test_purge_needs_confirmation_and_unknown_queues_are_refused(hub: Hub) -> None:
    dead_letter_timers(hub, 2)

    assert run(hub, "purge", "timers")[0] == 2
    assert visible(hub, url(hub, TIMERS_DLQ)) == 2
    assert run(hub, "redrive", "faxes")[0] == 2

    status, output = run(hub, "purge", "timers", "--yes")
    assert status == 0 and "purged" in output
    assert visible(hub, url(hub, TIMERS_DLQ)) == 0


def test_the_deduplication_id_is_stable_per_dead_letter_and_never_the_original() -> None:
    message = {"MessageId": "m-1", "Attributes": {"MessageDeduplicationId": "twilio:SM1"}}
    first = dlq.redrive_deduplication_id(message)
    assert first == dlq.redrive_deduplication_id(dict(message))
    assert first != "twilio:SM1" and len(first) <= 128
    assert first != dlq.redrive_deduplication_id({**message, "MessageId": "m-2"})


def test_python_m_ops_dlq_runs_against_the_emulator(hub: Hub) -> None:
    dead_letter_timers(hub, 1)
    environment = {**os.environ, "OMNIHUB_QUEUE_PREFIX": prefix_of(hub)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.dlq", *argv],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert f"{prefix_of(hub)}{TIMERS_DLQ}" in listed.stdout
    moved = cli("redrive", "timers")
    assert moved.returncode == 0 and "moved 1 message(s)" in moved.stdout, moved.stderr
    assert len(drain(hub, hub.resources["TIMER_QUEUE_URL"])) == 1
