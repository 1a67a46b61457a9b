"""The local stack as `make run` starts it (`python -m local` in a subprocess, the same way as
tests/e2e does), with web chat configured, and a headless Chromium driven by Playwright.

Chromium is Debian's (`apt-get install chromium`, at /usr/bin/chromium): Playwright never
downloads a browser here (`playwright install` is not used). Set CHROMIUM to use another binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import RunningHub, free_port, start_hub, stop_hub, wait_healthy

WEBCHAT_SESSION_SECRET = "browser-webchat-session-secret-0123456789"
WEBCHAT_JWT_SECRET = "browser-webchat-jwt-secret-" + "0123456789abcdef" * 3
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def webchat_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("webchat-hub") / "hub.log"
    process = start_hub(
        port,
        log_path,
        {
            "WEBCHAT_SESSION_SECRET": WEBCHAT_SESSION_SECRET,
            "WEBCHAT_JWT_SECRET": WEBCHAT_JWT_SECRET,
            "WEBCHAT_ALLOWED_ORIGINS": "*",
            # Surveys at once after a resolution (the rating test); nothing else here resolves.
            "ROUTING_CONFIG": '{"surveys": {"delay_seconds": 0}}',
        },
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log_path)
    yield RunningHub(url, process, log_path)
    stop_hub(process, log_path)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (own storage) per test; console errors and page errors are kept,
    so a test can assert the page ran cleanly (a CSP violation is a console error)."""
    context = chromium.new_context(viewport={"width": 420, "height": 640}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda message: (
            page.problems.append(f"console {message.type}: {message.text}")  # type: ignore[attr-defined]
            if message.type == "error"
            else None
        ),
    )
    yield page
    context.close()
