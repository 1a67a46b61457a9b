"""Ctrl-C stops `make run` promptly, even while the hub is busy.

The stack is started as `make run` starts it (`python -m local`, via the e2e conftest's helpers),
made busy in every way a developer's machine makes it busy (about a thousand agents stored, web
chat long polls waiting, inbound messages for the workers, CRM webhook endpoints that never answer
so that a worker sits in the middle of a batch, and API requests still arriving), then it gets
SIGINT. In-flight work may be abandoned (SQS redelivers it); the process must be gone within a
few seconds, with exit code 0 and a one-line message. SIGTERM is handled the same way, and a
second signal exits at once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RunningHub, free_port, start_hub, wait_healthy
from tests.e2e.test_inbound_e2e import inbound, new_number, twilio_post

AGENTS = 1000
LONG_POLLS = 4
SHUTDOWN_BOUND_SECONDS = 5.0


class SilentCrm:
    """A webhook endpoint that accepts connections and reads, but never answers: the CRM
    deliveries hang until their timeout, so the crm-events worker is busy mid-batch."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hooks"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._closed.set()
        for connection in [self._sock, *self._held]:
            connection.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    port = free_port()
    log_path = tmp_path / "hub.log"
    process = start_hub(port, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log_path)
        yield RunningHub(url, process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _in_background(stop: threading.Event, work: Callable[[], object]) -> threading.Thread:
    """Repeat `work` until `stop`. Its failures do not matter (the load is the point, and a hub
    going away fails requests), so they only slow the loop down."""

    def loop() -> None:
        while not stop.is_set():
            try:
                work()
            except Exception:
                time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def _register_agents(hub: RunningHub, count: int) -> None:
    """PUT /v1/agents/{id} `count` times. The hub is CPU-bound here (about 35 ms an agent on two
    cores), so a few threads are as fast as many, and gentler on the server's listen backlog."""

    def put(index: int) -> None:
        for attempt in range(3):  # an idempotent PUT: a connection reset under load is retried
            try:
                response = requests.put(
                    f"{hub.url}/v1/agents/shutdown-{index:04d}",
                    json={"name": f"Agent {index}", "skills": {"billing": 1 + index % 10}, "capacity": {"sms": 2}},
                    headers=hub.api,
                    timeout=30,
                )
                break
            except requests.ConnectionError:
                if attempt == 2:
                    raise
        assert response.status_code in (200, 201), response.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(count)))


def _long_poll(hub: RunningHub) -> Callable[[], object]:
    """A web chat visitor who has written once, waiting for an answer: each call is a
    GET /webchat/messages?wait=25 after their own message, which nobody answers."""
    started = requests.post(hub.url + "/webchat/sessions", json={}, timeout=15)
    assert started.status_code == 201, started.text
    sent = requests.post(
        hub.url + "/webchat/messages",
        json={"body": "hello, anyone there?", "client_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {started.json()['session']}"},
        timeout=15,
    )
    assert sent.status_code in (200, 201), sent.text
    bearer = {"Authorization": f"Bearer {sent.json().get('session') or started.json()['session']}"}
    after = sent.json()["message"]["id"]
    return lambda: requests.get(
        hub.url + "/webchat/messages", params={"wait": 25, "after": after}, headers=bearer, timeout=40
    )


def _stop_and_time(process: subprocess.Popen[str], sig: int, bound: float) -> float:
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=bound + 15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def _assert_stopped_cleanly(hub: RunningHub, elapsed: float, bound: float = SHUTDOWN_BOUND_SECONDS) -> None:
    log = hub.log()
    assert elapsed < bound, f"still running {elapsed:.1f} s after the signal:\n{log[-4000:]}"
    assert hub.process.returncode == 0, log[-4000:]
    assert log.rstrip().splitlines()[-1].startswith("omnihub: stopped"), log[-4000:]


def test_ctrl_c_stops_a_busy_hub_within_seconds(hub: RunningHub) -> None:
    crms = [SilentCrm(), SilentCrm()]  # two endpoints: the CRM fan-out runs in a thread pool
    stop = threading.Event()
    try:
        for crm in crms:
            endpoint = requests.post(
                hub.url + "/v1/webhooks", json={"url": crm.url, "events": ["*"]}, headers=hub.api, timeout=15
            )
            assert endpoint.status_code == 201, endpoint.text

        began = time.monotonic()
        _register_agents(hub, AGENTS)
        print(f"\nregistered {AGENTS} agents in {time.monotonic() - began:.1f} s")

        # Web chat visitors waiting in long polls (up to 25 s each) when Ctrl-C comes.
        for _ in range(LONG_POLLS):
            _in_background(stop, _long_poll(hub))
        # Inbound messages keep the routing worker (and, through the CRM, the crm-events worker) busy,
        # and agents' listings and updates keep the HTTP server and the emulator busy.
        _in_background(stop, lambda: twilio_post(hub, inbound(new_number(), "Urgent: my order is late")))
        _in_background(stop, lambda: _long_poll(hub))  # each a new visitor writing: more routing work
        _in_background(stop, lambda: hub.get("/v1/agents"))
        _in_background(
            stop,
            lambda: requests.post(
                f"{hub.url}/v1/agents/shutdown-{uuid.uuid4().int % AGENTS:04d}/status",
                json={"status": "available"},
                headers=hub.api,
                timeout=30,
            ),
        )
        time.sleep(3)  # let the workers pick up batches and the long polls settle in
        assert hub.process.poll() is None, hub.log()[-4000:]

        elapsed = _stop_and_time(hub.process, signal.SIGINT, SHUTDOWN_BOUND_SECONDS)
        print(f"shutdown after SIGINT took {elapsed:.2f} s (exit code {hub.process.returncode})")
    finally:
        stop.set()
        for crm in crms:
            crm.close()
    _assert_stopped_cleanly(hub, elapsed)


def test_sigterm_stops_it_too_and_a_second_signal_exits_at_once(hub: RunningHub) -> None:
    stop = threading.Event()
    try:
        _in_background(stop, _long_poll(hub))
        time.sleep(1)
        hub.process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        elapsed = _stop_and_time(hub.process, signal.SIGINT, 1.0)
        print(f"\nexit after SIGTERM then SIGINT took {elapsed:.2f} s (exit code {hub.process.returncode})")
    finally:
        stop.set()
    log = hub.log()
    assert "omnihub: stopping..." in log, log[-4000:]  # SIGTERM is handled as Ctrl-C is, not fatal
    assert elapsed < 1.0, log[-4000:]
    # 130 when the second signal cut the stop short, 0 when the first had already finished it.
    assert hub.process.returncode in (0, 130), log[-4000:]
