"""`make run`: start the whole hub locally and keep it running until Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from typing import NoReturn

from local.stack import LOCAL_DEFAULTS, LocalStack


def _wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _shown(stack: LocalStack, name: str, placeholder: str) -> str:
    """A provider secret is printed only when it is the well-known local default."""
    value = stack.settings[name]
    return value if value == LOCAL_DEFAULTS[name] else placeholder


def _banner(stack: LocalStack) -> str:
    s, url = stack.settings, stack.url
    sendgrid_token = _shown(stack, "SENDGRID_INBOUND_TOKEN", "<SENDGRID_INBOUND_TOKEN>")
    twilio_token = _shown(stack, "TWILIO_AUTH_TOKEN", "(from your environment)")
    return f"""
omnihub is running at {url}   (Ctrl-C stops it; data lives in memory for this run)

  Webhooks to give the providers (behind a tunnel, set PUBLIC_BASE_URL to its URL):
    Twilio messaging   POST {url}/webhooks/twilio/messaging
    Twilio status      POST {url}/webhooks/twilio/status
    SendGrid inbound   POST {url}/webhooks/sendgrid/inbound?token={sendgrid_token}
    Meta               GET+POST {url}/webhooks/meta   (WhatsApp Cloud API, Messenger, Instagram)
    Telegram           POST {url}/webhooks/telegram
    LINE               POST {url}/webhooks/line
    WeChat             GET+POST {url}/webhooks/wechat
  Try them signed:     .venv/bin/python -m local.send --help   (SMS, WhatsApp, email and every chat app)

  REST API             {url}/v1/...   Authorization: Bearer {s["HUB_API_KEY"]}
  Twilio auth token    {twilio_token}   (webhooks must be signed with it)
  Provider sandbox     {stack.sandbox.url}/sandbox/messages   (outbound provider calls land here)
  AWS emulator         {stack.emulator_url}   (table {s["TABLE_NAME"]}, queue {s["ROUTING_QUEUE_URL"]})
  Event history        s3://{s["EVENT_LOG_BUCKET"]}/events/dt=YYYY-MM-DD/ in the emulator (one NDJSON line per event)
"""


# Ctrl-C (or SIGTERM) stops the stack, giving the work under way this long to finish; whatever
# still runs after that (a handler mid-batch, a web chat long poll, a CRM delivery waiting on
# its timeout) is abandoned: data lives in memory for the run, and SQS would redeliver it anyway.
STOP_GRACE_SECONDS = 0.5
# However stopping goes, the process is gone this long after the first signal.
STOP_DEADLINE_SECONDS = 2.0
# A second Ctrl-C exits at once with the shell's code for "interrupted".
EXIT_INTERRUPTED = 130


def _exit_now(code: int, message: str | None = None) -> NoReturn:
    """End the process without the interpreter's shutdown, which would wait for every non-daemon
    thread (the CRM fan-out's thread pool, say, in a delivery waiting on its timeout)."""
    with contextlib.suppress(Exception):
        if message:
            print(message, flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class _Stopping:
    """SIGINT/SIGTERM while the stack is up asks the main thread to stop it and arms a watchdog
    that ends the process if stopping takes too long. A signal while it is still starting, or a
    second one, ends the process at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.serving = False  # set once the stack is up: from then on, stopping it is worth a moment

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested.is_set():
            _exit_now(EXIT_INTERRUPTED, "omnihub: stopped at once (second signal)")
        if not self.serving:
            _exit_now(0, "omnihub: stopped while starting")
        self.requested.set()
        watchdog = threading.Timer(
            STOP_DEADLINE_SECONDS, _exit_now, args=(0, "omnihub: stopped (work under way abandoned)")
        )
        watchdog.daemon = True
        watchdog.start()


def main() -> int:
    stopping = _Stopping()
    stopping.install()
    stack = LocalStack(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
    try:
        stack.start()
        _wait_healthy(stack.url)
    except OSError as exc:
        print(f"omnihub could not start: {exc}", file=sys.stderr)
        stack.stop(timeout=STOP_GRACE_SECONDS)
        return 1
    stopping.serving = True
    print(_banner(stack), flush=True)
    stopping.requested.wait()
    print("omnihub: stopping... (Ctrl-C again to exit at once)", flush=True)
    # What the abandoned work logs on its way down (requests failing against the closed emulator,
    # say) would bury the last line.
    logging.disable(logging.CRITICAL)
    stack.stop(timeout=STOP_GRACE_SECONDS)
    print("omnihub: stopped", flush=True)
    return 0


if __name__ == "__main__":
    _exit_now(main())
