"""infra/functions.py says what each function may touch; the code says what it does touch.

These tests read the import graph of each entry point (tests/infra/codemap.py) and fail when the
grants fall behind the code (a new secret, a new queue) or run ahead of it (a grant nothing uses).
No synthesis needed.
"""

from __future__ import annotations

import pytest

from infra.functions import ALL_FUNCTIONS, API, EDGE_ONLY_SECRETS, SECRETS, WORKERS, FunctionSpec
from tests.infra import codemap


def test_every_secret_the_code_reads_has_a_parameter_and_no_other() -> None:
    in_code = codemap.all_secrets()
    missing = in_code - set(SECRETS)
    stale = set(SECRETS) - in_code
    assert not missing, f"secret() names with no SSM parameter: add them to infra/functions.py SECRETS: {missing}"
    assert not stale, f"SECRETS the code no longer reads: remove them from infra/functions.py: {stale}"


def test_edge_only_secrets_are_secrets() -> None:
    assert set(EDGE_ONLY_SECRETS) <= set(SECRETS)


def test_the_api_reads_every_secret() -> None:
    assert codemap.secrets(API.entry_module) == set(SECRETS) == set(API.secrets)


@pytest.mark.parametrize("spec", WORKERS, ids=lambda spec: spec.logical_id)
def test_workers_get_the_secrets_their_code_reads_except_webhook_verification(spec: FunctionSpec) -> None:
    reachable = codemap.secrets(spec.entry_module)
    granted = set(spec.secrets)
    assert granted <= reachable, f"granted but never read: {granted - reachable}"
    assert not granted & EDGE_ONLY_SECRETS, "workers never verify webhooks"
    assert reachable - granted <= EDGE_ONLY_SECRETS, f"read but not granted: {reachable - granted - EDGE_ONLY_SECRETS}"


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_each_function_may_send_to_exactly_the_queues_its_code_names(spec: FunctionSpec) -> None:
    used = codemap.queues(spec.entry_module)
    assert used == set(spec.sends_to)


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_providers_layer_exactly_where_the_code_imports_a_provider_sdk(spec: FunctionSpec) -> None:
    sdks = {"twilio", "sendgrid", "python_http_client"}
    imports = set(codemap.third_party(spec.entry_module))
    assert bool(imports & sdks) is spec.providers


_PRUNED = {"geocoder", "carrier", "timezone", "geodata", "carrierdata", "tzdata"}


def test_no_code_path_needs_the_phonenumbers_data_the_layer_leaves_out() -> None:
    for spec in ALL_FUNCTIONS:
        names = [name.split(".") for name in codemap.imported_names(spec.entry_module)]
        pruned = {".".join(parts) for parts in names if parts[0] == "phonenumbers" and set(parts[1:2]) & _PRUNED}
        assert not pruned, f"{spec.entry_module} imports {pruned}: drop them from infra/packaging.py PRUNE_DIRS"


def test_the_closure_reader_finds_lazy_imports() -> None:
    # handlers/routing.py imports services.routing, which imports consent inside a function
    assert "chalicelib.services.consent" in codemap.closure("handlers.routing")
    # and the registry names chat-app channel modules as strings
    assert {"chalicelib.channels.meta", "chalicelib.channels.telegram"} <= set(codemap.closure("app"))
