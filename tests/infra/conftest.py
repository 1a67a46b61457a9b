"""One synthesis of both stages per test session (`python infra/app.py -c stage=dev,prod`, as
`make synth` runs it, into a temporary cloud assembly), shared by every infrastructure test.

Synthesis needs Node.js (aws-cdk-lib runs on jsii) and PyPI (the Lambda layers are built from
wheels on first use, then cached under infra/.build/); without Node the tests are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")
SYNTH_TIMEOUT_SECONDS = 900  # a first run downloads and byte-compiles the layers

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The first test pays for the session's synthesis; the default per-test timeout is for tests.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(SYNTH_TIMEOUT_SECONDS + 120))


@dataclass
class Synthesis:
    assembly: Path
    seconds: float
    templates: dict[str, dict[str, Any]]

    def template_path(self, stage: str) -> Path:
        return self.assembly / f"{stage}.template.json"


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: aws-cdk-lib cannot synthesise")
    assembly = tmp_path_factory.mktemp("cdk.out")
    env = {**os.environ, "CDK_OUTDIR": str(assembly), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "app.py"), "-c", f"stage={','.join(STAGES)}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_SECONDS,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"synthesis failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    templates = {stage: json.loads((assembly / f"{stage}.template.json").read_text()) for stage in STAGES}
    return Synthesis(assembly=assembly, seconds=seconds, templates=templates)


@pytest.fixture(scope="session")
def templates(synthesis: Synthesis) -> dict[str, Any]:
    """aws_cdk.assertions.Template per stage."""
    from aws_cdk.assertions import Template

    return {stage: Template.from_json(template) for stage, template in synthesis.templates.items()}
