"""boto3 clients, made on first use and shared.

Endpoints come from boto3's own configuration (`AWS_ENDPOINT_URL` points every client at the
local emulator), so nothing here knows whether it talks to AWS or to moto.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None
_clients: dict[str, Any] = {}


def session() -> Any:
    """The boto3 session every client comes from (benchmarks hook its events to count requests)."""
    global _session
    with _lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session


def client(service: str) -> Any:
    existing = _clients.get(service)
    if existing is not None:
        return existing
    from botocore.config import Config

    from chalicelib.config import settings

    timeout = settings().aws_timeout_seconds
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=50,
    )
    made = session().client(service, config=config)
    with _lock:
        return _clients.setdefault(service, made)


def reset() -> None:
    """Forget clients and session (tests that change the environment call this)."""
    global _session
    with _lock:
        _session = None
        _clients.clear()
