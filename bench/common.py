"""Helpers the benchmarks share: the in-process local stack and patches that make its emulator
(moto) cheaper without changing any answer or request count, waiting for a worker's queue to
drain, signed inbound Twilio messages, percentiles.

Imported by bench/inbound.py and bench/routing.py, which run as scripts (`python bench/x.py`), so
`bench/` is on sys.path and this module is plain `common`.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local.emulator_speedups import speed_up_emulator  # noqa: E402, F401 (the benchmarks import it from here)

MESSAGING_PATH = "/webhooks/twilio/messaging"
HUB_NUMBER = "+14155238886"
ACCOUNT_SID = "AC00000000000000000000000000000000"

REQUEST_TIMEOUT = 15.0
DRAIN_TIMEOUT = 30.0


# --- The local stack ------------------------------------------------------------------------------


class _OneSnapshotPerTable:
    """Stands in for the `copy` module inside moto.dynamodb.models (see `patch_emulator`)."""

    def __init__(self, real: Any, table_type: type) -> None:
        self._real = real
        self._table_type = table_type
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        copies = getattr(self._local, "copies", None)
        if copies is None or not isinstance(value, self._table_type):
            return self._real.deepcopy(value, memo)
        if id(value) not in copies:
            copies[id(value)] = self._real.deepcopy(value, memo)
        return copies[id(value)]

    def wrap(self, transact_write_items: Any) -> Any:
        def one_snapshot_per_table(backend: Any, *args: Any, **kwargs: Any) -> Any:
            self._local.copies = {}
            try:
                return transact_write_items(backend, *args, **kwargs)
            finally:
                self._local.copies = None

        one_snapshot_per_table.patched_by_bench = True  # type: ignore[attr-defined]
        return one_snapshot_per_table


def patch_emulator() -> None:
    """Take moto's TransactWriteItems rollback snapshot once per table instead of once per item.

    moto 5.2 deep-copies the whole table for every item of a transaction before applying it (the
    copies are identical: nothing is written until all are taken), so a 4-item ingest transaction
    copies the table 4 times and the emulator, not the hub, dominates latency as the table grows.
    One copy per table is the same snapshot and the same rollback; request counts are unaffected.
    """
    from moto.dynamodb import models

    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "patched_by_bench", False):
        return
    shim = _OneSnapshotPerTable(models.copy, models.Table)
    models.copy = shim  # type: ignore[assignment]
    backend.transact_write_items = shim.wrap(backend.transact_write_items)  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_stack() -> Iterator[Any]:
    # A fresh hub on this machine only: nothing inherited may point it elsewhere.
    for name in ("AWS_ENDPOINT_URL", "PUBLIC_BASE_URL", "TABLE_NAME", "ROUTING_QUEUE_URL"):
        os.environ.pop(name, None)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"]))
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the hub logs every message at INFO

    from local.stack import LocalStack

    patch_emulator()
    stack = LocalStack(host="127.0.0.1", port=free_port())
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def wait_healthy(session: Any, url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if session.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/health did not answer 200 within {timeout:.0f} s")


class QueueWatcher:
    """Waits for a worker to finish everything on its queue (not counted: own client).

    `activity` returns a number that moves while the worker is still making AWS calls (a count of
    its requests); the queue is drained once it is empty and that number has stopped moving.
    """

    ATTRIBUTES = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )

    def __init__(self, stack: Any, activity: Callable[[], int], queue_setting: str = "ROUTING_QUEUE_URL") -> None:
        from local.emulator import boto3_client

        self._sqs = boto3_client("sqs", stack.emulator_url)
        self._queue_url = stack.settings[queue_setting]
        self._activity = activity

    def pending(self) -> int:
        attributes = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=list(self.ATTRIBUTES))
        return sum(int(attributes["Attributes"].get(name, 0)) for name in self.ATTRIBUTES)

    def drain(self, timeout: float = DRAIN_TIMEOUT, settle: float = 0.3) -> bool:
        """True once the queue is empty and the worker's request count has stopped moving."""
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = self._activity()
            if total != last:
                last, stable_since = total, time.monotonic()
            if self.pending() == 0 and time.monotonic() - stable_since >= settle:
                return True
            time.sleep(0.05)
        return False


# --- Sending messages -----------------------------------------------------------------------------


@dataclass
class Sent:
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.failures.values())


def inbound_params(sender: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": HUB_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }


def send_messages(stack: Any, senders: list[str], concurrency: int) -> Sent:
    """POST one signed inbound message per entry of `senders`, from `concurrency` client threads."""
    import requests

    from tests.support.twilio_signature import sign_form

    # The URL as the hub reconstructs it from PUBLIC_BASE_URL: that is what Twilio signs.
    signed_url = stack.settings["PUBLIC_BASE_URL"].rstrip("/") + MESSAGING_PATH
    post_url = stack.url + MESSAGING_PATH
    token = stack.settings["TWILIO_AUTH_TOKEN"]
    result = Sent()
    lock = threading.Lock()
    next_index = iter(range(len(senders)))

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False  # no proxies: 127.0.0.1 only
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                params = inbound_params(senders[index], f"bench message {index}")
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": sign_form(signed_url, params, token),
                }
                started = time.perf_counter()
                try:
                    response = session.post(post_url, data=urlencode(params), headers=headers, timeout=REQUEST_TIMEOUT)
                    outcome = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    if outcome is None:
                        result.latencies.append(elapsed)
                    else:
                        result.failures[outcome] += 1

    threads = [threading.Thread(target=client, name=f"bench-client-{i}", daemon=True) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + REQUEST_TIMEOUT * (len(senders) / max(1, concurrency) + 2)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    result.wall_seconds = time.perf_counter() - started
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        result.failures["client thread still running at deadline"] += stuck
    return result


# --- Figures --------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


class RequestCounter:
    """AWS calls the hub makes, by role (what `role()` names the calling thread) and operation.

    `calls` counts API calls (botocore `before-call`); `attempts` the HTTP requests actually sent
    (`before-send`; higher only when botocore retried); `ever` every call of the run (never reset);
    `items` the DynamoDB items each role read (`after-call`: a Query's ScannedCount, a GetItem's
    item, a BatchGetItem's items). Roles in `roles` are always present; others appear when first
    seen and go on `reset()`.
    """

    def __init__(self, role: Callable[[], str], roles: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._role = role
        self._roles = roles
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter, {name: Counter() for name in roles})
        self.attempts: defaultdict[str, Counter[str]] = defaultdict(Counter, {name: Counter() for name in roles})
        self.ever: Counter[str] = Counter()
        self.items: Counter[str] = Counter()

    @staticmethod
    def _operation(event_name: str) -> str:
        # "before-call.dynamodb.GetItem" -> "dynamodb.GetItem"
        return event_name.split(".", 1)[1]

    def on_call(self, event_name: str, **_: Any) -> None:
        operation = self._operation(event_name)
        with self._lock:
            self.calls[self._role()][operation] += 1
            self.ever[operation] += 1

    def on_send(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.attempts[self._role()][self._operation(event_name)] += 1

    def on_result(self, event_name: str, parsed: Any = None, **_: Any) -> None:
        operation = self._operation(event_name)
        if not isinstance(parsed, dict) or not operation.startswith("dynamodb."):
            return
        read = 0
        if operation in ("dynamodb.Query", "dynamodb.Scan"):
            read = int(parsed.get("ScannedCount", parsed.get("Count", 0)))
        elif operation == "dynamodb.GetItem":
            read = 1 if parsed.get("Item") else 0
        elif operation == "dynamodb.BatchGetItem":
            read = sum(len(found) for found in (parsed.get("Responses") or {}).values())
        elif operation == "dynamodb.TransactGetItems":
            read = len(parsed.get("Responses") or [])
        if read:
            with self._lock:
                self.items[self._role()] += read

    def install(self) -> None:
        from chalicelib import aws

        events = aws.session().events
        events.register("before-call", self.on_call)
        events.register("before-send", self.on_send)
        events.register("after-call", self.on_result)

    def snapshot(self) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
        with self._lock:
            return (
                {role: Counter(c) for role, c in self.calls.items()},
                {role: Counter(c) for role, c in self.attempts.items()},
            )

    def total(self, role: str) -> int:
        """All API calls made so far by `role`."""
        with self._lock:
            return sum(self.calls[role].values())

    def items_read(self, role: str) -> int:
        with self._lock:
            return self.items[role]

    def reset(self) -> None:
        with self._lock:
            self.items.clear()
            for counters in (self.calls, self.attempts):
                for role in list(counters):
                    if role in self._roles:
                        counters[role].clear()
                    else:
                        del counters[role]


def report_checks(checks: list[tuple[str, bool, str]], started: float, *, enforce: bool) -> int:
    """Print each (label, passed, figure) check; the exit status is 1 when `enforce` and one failed."""
    print()
    for label, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}  ({value})")
    print(f"\n(bench ran in {time.monotonic() - started:.1f} s)")
    if enforce and not all(ok for _, ok, _ in checks):
        return 1
    return 0
