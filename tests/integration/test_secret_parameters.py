"""Secrets from SSM, as a deployed hub reads them: a named SecureString is decrypted and used, and a
parameter the operator never created leaves that secret unset instead of failing every request."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Hub


def test_a_secret_is_read_from_the_parameter_its_setting_names(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import secret

    name = f"/omnihub/test/{uuid.uuid4().hex}/telegram-secret-token"
    hub.client("ssm").put_parameter(Name=name, Value="from-ssm-0123", Type="SecureString")
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN", raising=False)
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN_PARAMETER", name)

    assert secret("telegram_secret_token") == "from-ssm-0123"


def test_a_parameter_that_does_not_exist_leaves_the_secret_unset(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import secret

    monkeypatch.delenv("LINE_CHANNEL_SECRET", raising=False)
    monkeypatch.setenv("LINE_CHANNEL_SECRET_PARAMETER", f"/omnihub/test/{uuid.uuid4().hex}/never-created")

    assert secret("line_channel_secret") == ""
