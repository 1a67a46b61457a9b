"""A provider sandbox serving one chat app's emulator, for tests of that app alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from local.sandbox import ProviderSandbox


@contextmanager
def serving(emulator: Any) -> Iterator[ProviderSandbox]:
    """The sandbox (Twilio/SendGrid unused, no simulated callbacks) with `emulator` plugged in."""
    sandbox = ProviderSandbox(
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="unused",
        sendgrid_api_key="SG.unused",
        simulate_status_callbacks=False,
    ).start()
    sandbox.add_emulator(emulator)
    try:
        yield sandbox
    finally:
        sandbox.stop()
