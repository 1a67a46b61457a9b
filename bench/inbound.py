"""Inbound benchmark: AWS requests per Twilio message, latency, throughput and cold-import cost.

Run from the repo root: `.venv/bin/python bench/inbound.py [--messages N] [--concurrency C]
[--identities K] [--import-runs R] [--check]` (`make bench` does). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import (
    DRAIN_TIMEOUT,
    ROOT,
    QueueWatcher,
    RequestCounter,
    Sent,
    percentile,
    report_checks,
    running_stack,
    send_messages,
    wait_healthy,
)

KNOWN_PREFIX = "+1501712"  # known identities: +15017120000, +15017120001, ...
NEW_PREFIX = "+1501713"  # first messages from new identities
MAX_IDENTITIES = 10_000
NEW_IDENTITY_MESSAGES = 50

# Targets from the issue.
MAX_REQUESTS_PER_KNOWN_MESSAGE = 3
MAX_IMPORT_RATIO = 1.2
PROVIDER_SDKS = ("twilio", "sendgrid", "python_http_client")

IMPORT_TIMEOUT = 60.0

BARE_IMPORT = 'import boto3, chalice; chalice.Chalice(app_name="bare")'
APP_IMPORT = "import app"
FIRST_REQUEST_IMPORT = (
    "import app; import chalicelib.services.ingest, chalicelib.channels.twilio, "
    "twilio.request_validator, chalicelib.store.thread, boto3"
)


# --- Cold import --------------------------------------------------------------------------------


def _timed_import_script(statement: str) -> str:
    return (
        "import time\n"
        "_t0 = time.perf_counter()\n"
        f"{statement}\n"
        "_t1 = time.perf_counter()\n"
        "import json, sys\n"
        f"_sdks = {PROVIDER_SDKS!r}\n"
        "_leaked = sorted(m for m in sys.modules if m.split('.')[0] in _sdks)\n"
        "print(json.dumps({'seconds': _t1 - _t0, 'leaked': _leaked}))\n"
    )


def _run_import(statement: str, env: dict[str, str]) -> tuple[float, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _timed_import_script(statement)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{statement}` failed in a fresh interpreter:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), list(result["leaked"])


@dataclass
class ImportFigures:
    app: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    first_request: list[float] = field(default_factory=list)
    leaked: set[str] = field(default_factory=set)

    @property
    def ratio(self) -> float:
        return statistics.median(self.app) / statistics.median(self.bare)


def measure_imports(runs: int) -> ImportFigures:
    """Each import in its own fresh interpreter, interleaved so drift hits all three alike."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    figures = ImportFigures()
    _run_import(FIRST_REQUEST_IMPORT, env)  # warm the bytecode cache; not counted
    for _ in range(runs):
        seconds, leaked = _run_import(APP_IMPORT, env)
        figures.app.append(seconds)
        figures.leaked.update(leaked)
        figures.bare.append(_run_import(BARE_IMPORT, env)[0])
        figures.first_request.append(_run_import(FIRST_REQUEST_IMPORT, env)[0])
    return figures


# --- AWS request counting -------------------------------------------------------------------------


def webhook_or_worker() -> str:
    """Calls made on a worker thread are the worker's; everything else serves a webhook."""
    return "worker" if threading.current_thread().name.startswith("worker-") else "webhook"


# --- Report ---------------------------------------------------------------------------------------


def _per_message(counter: Counter[str], messages: int) -> str:
    if not counter:
        return "none"
    return ", ".join(f"{op} {count / messages:.2f}" for op, count in sorted(counter.items()))


def _total(counter: Counter[str]) -> int:
    return sum(counter.values())


@dataclass
class Phase:
    name: str
    sent: Sent
    calls: dict[str, Counter[str]]
    attempts: dict[str, Counter[str]]
    drained: bool

    def print(self) -> None:
        n = self.sent.count
        webhook, worker = self.calls["webhook"], self.calls["worker"]
        print(f"\n{self.name}: {n} messages")
        print(f"  webhook AWS requests/message  {_total(webhook) / n:.2f}  ({_per_message(webhook, n)})")
        for role in ("webhook", "worker"):
            retried = _total(self.attempts[role]) - _total(self.calls[role])
            if retried:
                print(f"  {role} HTTP attempts beyond calls (botocore retries): {retried}")
        print(f"  worker AWS requests/message   {_total(worker) / n:.2f}  ({_per_message(worker, n)})")
        if not self.drained:
            print(f"  WARNING: the routing worker had not drained its queue after {DRAIN_TIMEOUT:.0f} s")
        if self.sent.failures:
            print(f"  non-200 responses: {dict(self.sent.failures)}")

    def print_timing(self) -> None:
        ms = [seconds * 1000 for seconds in self.sent.latencies]
        if ms:
            print(
                f"  latency ms  median {statistics.median(ms):.1f}  p95 {percentile(ms, 0.95):.1f}  "
                f"p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}"
            )
        if self.sent.wall_seconds > 0:
            print(f"  throughput  {self.sent.count / self.sent.wall_seconds:.1f} messages/s")

    @property
    def requests_per_message(self) -> float:
        """HTTP requests to AWS (retries included) per message."""
        return _total(self.attempts["webhook"]) / self.sent.count


def run_phase(
    name: str, stack: Any, counter: RequestCounter, watcher: QueueWatcher, senders: list[str], concurrency: int
) -> Phase:
    counter.reset()
    sent = send_messages(stack, senders, concurrency)
    drained = watcher.drain()
    calls, attempts = counter.snapshot()
    return Phase(name, sent, calls, attempts, drained)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="measured messages from known identities")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--identities", type=int, default=20, help="known identities the messages come from")
    parser.add_argument("--import-runs", type=int, default=15, help="fresh interpreters per import measurement")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    started = time.monotonic()
    args = parser.parse_args(argv)
    for name in ("messages", "concurrency", "identities", "import_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.identities > MAX_IDENTITIES:
        parser.error(f"--identities must be at most {MAX_IDENTITIES}")
    os.chdir(ROOT)

    print(f"Cold import ({args.import_runs} fresh interpreters each, AWS_DEFAULT_REGION set)")
    imports = measure_imports(args.import_runs)
    for label, values in (
        ("import app", imports.app),
        ("bare Chalice + boto3", imports.bare),
        ("first webhook's imports", imports.first_request),
    ):
        print(f"  {label:<26} median {statistics.median(values) * 1000:6.1f} ms   min {min(values) * 1000:6.1f} ms")
    print(f"  app / bare (medians)       {imports.ratio:.2f}")
    first_ratio = statistics.median(imports.first_request) / statistics.median(imports.bare)
    print(f"  first webhook / bare       {first_ratio:.2f}")
    print(f"  provider SDK modules after `import app`: {', '.join(sorted(imports.leaked)) or 'none'}")
    print(f"  (first webhook's imports = {FIRST_REQUEST_IMPORT})")

    known = [f"{KNOWN_PREFIX}{i:04d}" for i in range(args.identities)]
    fresh = [f"{NEW_PREFIX}{i:04d}" for i in range(min(NEW_IDENTITY_MESSAGES, args.messages))]
    counter = RequestCounter(webhook_or_worker, roles=("webhook", "worker"))
    with running_stack() as stack:
        import logging

        import requests

        logging.getLogger("omnihub").setLevel(logging.WARNING)
        counter.install()  # before the first request, so every client the hub makes inherits it
        with requests.Session() as session:
            session.trust_env = False
            wait_healthy(session, stack.url)
        watcher = QueueWatcher(stack, lambda: counter.total("worker"))

        warmup = run_phase("warm-up", stack, counter, watcher, known, args.concurrency)
        senders = [known[i % len(known)] for i in range(args.messages)]
        measured = run_phase("Known identities", stack, counter, watcher, senders, args.concurrency)
        first = run_phase("First messages from new identities", stack, counter, watcher, fresh, args.concurrency)

    print(
        f"\nLocal stack (moto over HTTP, in-process; {args.identities} known identities, "
        f"{args.concurrency} client threads; warm-up of {warmup.sent.count} first messages not measured)"
    )
    print("(latency and throughput are the whole pipeline's in one process on moto, which serves DynamoDB")
    print(" requests one at a time: compare runs of this bench with each other, not with AWS)")
    measured.print()
    measured.print_timing()
    first.print()
    first.print_timing()

    non_200 = sum(sum(phase.sent.failures.values()) for phase in (warmup, measured, first))
    drained = all(phase.drained for phase in (warmup, measured, first))
    checks = [
        (
            f"AWS requests per message from a known identity <= {MAX_REQUESTS_PER_KNOWN_MESSAGE}",
            measured.requests_per_message <= MAX_REQUESTS_PER_KNOWN_MESSAGE,
            f"{measured.requests_per_message:.2f}",
        ),
        (
            "no provider SDK imported by `import app`",
            not imports.leaked,
            ", ".join(sorted(imports.leaked)) or "none",
        ),
        (
            f"cold import of app.py <= {MAX_IMPORT_RATIO}x bare Chalice + boto3",
            imports.ratio <= MAX_IMPORT_RATIO,
            f"{imports.ratio:.2f}x",
        ),
        ("every webhook answered 200", non_200 == 0, f"{non_200} non-200"),
        ("routing worker drained its queue", drained, "yes" if drained else "timed out"),
    ]
    return report_checks(checks, started, enforce=args.check)


if __name__ == "__main__":
    sys.exit(main())
