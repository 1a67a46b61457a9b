"""`make run`: start the whole hub locally and keep it running until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request

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
"""


def main() -> int:
    stack = LocalStack(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
        _wait_healthy(stack.url)
    except OSError as exc:
        print(f"omnihub could not start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print(_banner(stack), flush=True)
    stopping.wait()
    print("omnihub: stopping...", flush=True)
    stack.stop()
    print("omnihub: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
