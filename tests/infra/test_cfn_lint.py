"""cfn-lint finds nothing in the synthesised templates (with the SAM transform applied).

The checks it skips are listed, with the reason, in .cfnlintrc.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.infra.conftest import ROOT, STAGES


def test_cfn_lint_is_clean(synthesis: Any) -> None:
    templates = [str(synthesis.template_path(stage)) for stage in STAGES]
    result = subprocess.run(
        [_cfn_lint(), "--config-file", str(ROOT / ".cfnlintrc"), "--", *templates],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"cfn-lint:\n{result.stdout}\n{result.stderr}"


def test_cfn_lint_ignores_only_what_is_justified() -> None:
    lines = (ROOT / ".cfnlintrc").read_text().splitlines()
    start = lines.index("ignore_checks:")
    ignored = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    assert ignored == ["W3005"]
    assert all(not check.startswith("E") for check in ignored), "errors are never ignored"


def _cfn_lint() -> str:
    beside = Path(sys.executable).parent / "cfn-lint"
    return str(beside) if beside.exists() else (shutil.which("cfn-lint") or "cfn-lint")
