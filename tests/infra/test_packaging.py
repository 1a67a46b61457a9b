"""The Lambda packages: every import resolves in what Lambda will have, nothing twice, small."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra import packaging
from infra.functions import ALL_FUNCTIONS, API, FunctionSpec
from infra.stages import STAGES
from tests.infra import codemap

# Lambda's Python runtime ships these (boto3 and its dependencies).
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code + all its layers


@pytest.fixture(scope="module")
def layers(synthesis: Any) -> packaging.Layers:
    # built (or found in infra/.build) by the session's synthesis; this only locates them
    return packaging.build_layers(packaging.Target(STAGES["prod"].architecture))


def top_level_modules(site: Path) -> set[str]:
    names = set()
    for entry in site.iterdir():
        if entry.name.endswith((".dist-info", ".data")) or entry.name == "__pycache__":
            continue
        if entry.is_dir() or entry.suffix == ".py" or entry.suffix == ".so":
            names.add(entry.name.split(".")[0])
    return names


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_every_import_resolves_in_the_functions_layers(layers: packaging.Layers, spec: FunctionSpec) -> None:
    available = top_level_modules(layers.core / "python") | RUNTIME_PROVIDED
    if spec.providers:
        available |= top_level_modules(layers.providers / "python")
    if spec is API:
        available.add("chalice")  # chalice package puts its runtime (chalice/app.py) in the zip
    missing = set(codemap.third_party(spec.entry_module)) - available
    assert not missing, f"{spec.entry_module} imports {missing}, which its Lambda package lacks"


def test_layers_hold_no_module_twice(layers: packaging.Layers) -> None:
    core = top_level_modules(layers.core / "python")
    providers = top_level_modules(layers.providers / "python")
    assert core & providers == set()
    assert {"twilio", "sendgrid"} <= providers
    assert not {"twilio", "sendgrid", "requests", "aiohttp"} & core


def test_layers_carry_the_pinned_versions(layers: packaging.Layers) -> None:
    installed = {}
    for site in (layers.core / "python", layers.providers / "python"):
        for info in site.glob("*.dist-info"):
            name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
            installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    core, providers = packaging.requirement_sets()
    for line in core + providers:
        name, version = line.split("==")
        assert installed[re.sub(r"[-_.]+", "-", name).lower()] == version, line


def test_packages_fit_lambda_with_room_to_spare(layers: packaging.Layers) -> None:
    code = packaging.build_code()
    total = sum(packaging.directory_size(path) for path in (code, layers.core, layers.providers))
    assert total < LAMBDA_UNZIPPED_LIMIT * 0.6
    assert packaging.directory_size(layers.core) < 40 * 1024 * 1024
    assert not (layers.core / "python" / "phonenumbers" / "geodata").exists()
    assert not (layers.providers / "python" / "test").exists(), "would shadow the standard library's test"


def test_code_bundle_is_the_workers_source_only() -> None:
    code = packaging.build_code()
    assert sorted(entry.name for entry in code.iterdir()) == ["chalicelib", "handlers"]
    assert (code / "chalicelib" / "webchat" / "page.html").exists()
    if packaging.lambda_python():
        # bytecode for Lambda's Python ships with the code (Lambda's file system is read-only)
        assert list((code / "handlers" / "__pycache__").glob("*.cpython-312.pyc"))
