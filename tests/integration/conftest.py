"""Fixtures shared by integration test modules."""

from collections.abc import Iterator

import pytest

from tests.integration.test_agent_replies import hub_with_providers, sandbox

__all__ = ["hub_with_providers", "sandbox"]


@pytest.fixture(autouse=True)
def _fresh_routing_config() -> Iterator[None]:
    """A test's ROUTING_CONFIG (set through monkeypatch) must not outlive it in the cached config:
    the next test reads the settings again."""
    yield
    from chalicelib.services.routing_config import routing_config

    routing_config.cache_clear()
