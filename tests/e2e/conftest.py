"""The local stack as `make run` starts it, in a subprocess, driven only over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).parents[2]
API_KEY = "e2e-api-key"
TWILIO_TOKEN = "e2e-twilio-auth-token"
SENDGRID_TOKEN = "e2e-sendgrid-inbound-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningHub:
    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.api, timeout=10, **kwargs)

    def customer_by_phone(self, phone: str) -> dict[str, Any] | None:
        found = self.get("/v1/customers", params={"phone": phone}).json()["data"]
        return found[0] if found else None

    def customer_by_email(self, email: str) -> dict[str, Any] | None:
        found = self.get("/v1/customers", params={"email": email}).json()["data"]
        return found[0] if found else None

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/conversations/{conversation_id}/messages", params={"limit": 200}).json()["data"])


def start_hub(port: int, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m local`; its output goes to a file (a pipe nobody drains would block it)."""
    env = {
        **os.environ,
        "PORT": str(port),
        "HUB_API_KEY": API_KEY,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "SENDGRID_INBOUND_TOKEN": SENDGRID_TOKEN,
        "MAX_BODY_BYTES": str(256 * 1024),
        # A visitor whose page has not polled for 2 s counts as gone (the seed scenario closes the tab).
        "WEBCHAT_OFFLINE_AFTER_SECONDS": "2",
        # Tests share one stack, so conversations from other tests wait in line; an "urgent" message
        # outranks them, which is how a test gets its own conversation offered first.
        "ROUTING_CONFIG": '{"rules": [{"name": "urgent", "when": {"keywords": ["urgent"]}, "priority": 9}]}',
        **(extra_env or {}),
    }
    for inherited in ("AWS_ENDPOINT_URL", "PUBLIC_BASE_URL", "TABLE_NAME", "ROUTING_QUEUE_URL"):
        env.pop(inherited, None)
    return subprocess.Popen(
        [sys.executable, "-m", "local"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_healthy(url: str, process: subprocess.Popen[str], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text()
            raise RuntimeError(f"the local stack exited with {process.returncode}:\n{output[-4000:]}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the local stack did not become healthy")


def stop_hub(process: subprocess.Popen[str], log_path: Path) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, log_path.read_text()


@pytest.fixture(scope="session")
def running_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("hub") / "hub.log"
    process = start_hub(port, log_path)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log_path)
    yield RunningHub(url, process, log_path)
    stop_hub(process, log_path)
