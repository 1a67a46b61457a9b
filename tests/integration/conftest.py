"""Fixtures shared by integration test modules."""

from tests.integration.test_agent_replies import hub_with_providers, sandbox

__all__ = ["hub_with_providers", "sandbox"]
