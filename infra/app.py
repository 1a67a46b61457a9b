"""The CDK app: `python infra/app.py [-c stage=dev|prod|dev,prod]` synthesises into cdk.out/.

The stage comes from the context (`-c stage=prod`, as `cdk deploy -c stage=prod` passes it), else
the STAGE environment variable, else dev; several stages at once are comma-separated. No AWS
credentials are needed: the stack is environment-agnostic.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder leads sys.path, where `app` would mean this file and not
# the Chalice app that chalice.cdk imports; the repository root is what the imports need.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != REPO / "infra"]
sys.path.insert(0, str(REPO))

# chalice.cdk needs a region to package the app (nothing region-specific ends up in the template).
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# jsii warns loudly about Node 20's end of life on every run; the synthesis itself is unaffected.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def context_from_argv(argv: list[str]) -> dict[str, str]:
    """`-c key=value` / `--context key=value` pairs, as the cdk CLI spells them."""
    context = {}
    for flag, value in itertools.pairwise(argv):
        if flag in {"-c", "--context"} and "=" in value:
            key, _, item = value.partition("=")
            context[key] = item
    return context


def main(argv: list[str]) -> None:
    import aws_cdk as cdk

    from infra.stack import OmnihubStack
    from infra.stages import stage_config

    options: dict[str, object] = {"context": context_from_argv(argv)}
    if not os.environ.get("CDK_OUTDIR"):  # run directly, not by the cdk CLI
        options["outdir"] = str(REPO / "cdk.out")
    app = cdk.App(**options)
    requested = str(app.node.try_get_context("stage") or os.environ.get("STAGE") or "dev")
    for name in [part.strip() for part in requested.split(",") if part.strip()]:
        OmnihubStack(app, stage_config(name))
    app.synth()


if __name__ == "__main__":
    main(sys.argv[1:])
