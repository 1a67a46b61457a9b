"""Importing app.py (a cold start) pulls in no provider SDK and none of the heavy libraries the
first request loads on demand (see bench/ for the timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_app_import_loads_no_provider_sdk_boto3_or_settings() -> None:
    probe = "import json, sys; import app; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(output))
    heavy = {"twilio", "sendgrid", "python_http_client", "boto3", "pydantic", "pydantic_settings", "phonenumbers"}
    assert loaded & heavy == set()
    assert "chalice" in loaded
