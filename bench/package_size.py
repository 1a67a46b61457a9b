"""Size and cold-import time of each Lambda function's package, as infra/ deploys it.

    .venv/bin/python bench/package_size.py [--stage prod] [--runs 7]

For each function (the Chalice API and the handlers/ workers) it builds, or reuses from
infra/.build/, exactly what the stack uploads: the code (handlers/ + chalicelib/ for workers;
app.py + chalicelib/ + Chalice's runtime for the API) and the layers it gets (core, plus providers
where it sends). It prints:

- zipped MB: the code and each layer zipped as they are uploaded (deflate), summed;
- unzipped MB: what Lambda extracts (limit 250 MB for code plus layers);
- import ms: median over fresh interpreters of importing the handler module, with the code and
  layer directories on sys.path in Lambda's order and nothing else (no site-packages), bytecode
  never written (Lambda's file system is read-only): "shipped" uses the .pyc files in the package,
  "no pyc" ignores them (what every cold start would pay without them), "+SDKs" also imports
  what a first send loads (twilio.rest.Client, sendgrid) on functions that can send.

Imports run on Lambda's Python (3.12) when it is installed here. The packages are built for the
stage's architecture (arm64 by default); on another host architecture the import times come from
the same build for this host (same wheels' versions, same files, native .so for here), which is
said in the output.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra import packaging  # noqa: E402
from infra.functions import ALL_FUNCTIONS, API, FunctionSpec  # noqa: E402
from infra.stages import STAGES  # noqa: E402

MB = 1024 * 1024
# what a first SMS and a first email load (Client.messages is the Messages API, twilio.rest.api)
SDK_IMPORTS = "from twilio.rest import Client; Client('AC' + '0' * 32, 'token').messages; import sendgrid"
# Lambda's runtime provides boto3; the handler modules import it only on first AWS call, but
# give the import probe the host's copy (appended last, as /var/runtime is in Lambda).
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six")


@dataclass
class Package:
    spec: FunctionSpec
    code: Path
    layers: list[Path]

    @property
    def directories(self) -> list[Path]:
        return [self.code, *self.layers]


def api_code(code: Path, destination: Path) -> Path:
    """What `chalice package` zips for the API: app.py, chalicelib/ and Chalice's own runtime."""
    import chalice
    import chalice.app

    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(code / "chalicelib", destination / "chalicelib")
    shutil.copy2(ROOT / "app.py", destination / "app.py")
    (destination / "chalice").mkdir()
    shutil.copy2(inspect.getfile(chalice.app), destination / "chalice" / "app.py")
    shutil.copy2(inspect.getfile(chalice), destination / "chalice" / "__init__.py")
    return destination


def packages(target: packaging.Target, python: str | None) -> list[Package]:
    layers = packaging.build_layers(target, compile_python=python)
    code = packaging.build_code(compile_python=python)
    api = api_code(code, packaging.BUILD / "bench" / f"api-{target.architecture}")
    built = []
    for spec in ALL_FUNCTIONS:
        spec_layers = [layers.core / "python"] + ([layers.providers / "python"] if spec.providers else [])
        built.append(Package(spec, api if spec is API else code, spec_layers))
    return built


def zipped_size(directory: Path, cache: dict[Path, int]) -> int:
    if directory not in cache:
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "package.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
                for path in sorted(directory.rglob("*")):
                    if path.is_file():
                        bundle.write(path, path.relative_to(directory))
            cache[directory] = archive.stat().st_size
    return cache[directory]


def runtime_dir() -> Path:
    """The host's boto3 and friends, standing in for Lambda's /var/runtime."""
    destination = packaging.BUILD / "bench" / "runtime"
    if not destination.exists():
        destination.mkdir(parents=True)
        import importlib.util

        for name in RUNTIME_MODULES:
            found = importlib.util.find_spec(name)
            if found is None or found.origin is None:
                continue
            origin = Path(found.origin)
            source = origin.parent if origin.name == "__init__.py" else origin
            target = destination / source.name
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target)
    return destination


def import_time(python: str, package: Package, statement: str, runs: int, use_pyc: bool) -> float:
    paths = [str(path) for path in package.directories] + [str(runtime_dir())]
    probe = (
        f"import sys, time; sys.path[:0] = {paths!r}; t = time.perf_counter(); {statement}; "
        "print(time.perf_counter() - t)"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "omnihub",
        "POWERTOOLS_METRICS_NAMESPACE": "Omnihub",
    }
    with tempfile.TemporaryDirectory() as empty:
        flags = ["-I", "-S", "-B"] + ([] if use_pyc else ["-X", f"pycache_prefix={empty}"])
        samples = []
        for _ in range(runs):
            result = subprocess.run(
                [python, *flags, "-c", probe], capture_output=True, text=True, env=env, cwd=empty, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(f"{statement} failed:\n{result.stderr[-2000:]}")
            samples.append(float(result.stdout.strip().splitlines()[-1]))
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod", choices=sorted(STAGES))
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per measurement (median)")
    args = parser.parse_args()

    config = STAGES[args.stage]
    deployed_target = packaging.Target(config.architecture)
    lambda_python = packaging.lambda_python()
    deployed = packages(deployed_target, lambda_python)

    host = packaging.Target.host()
    python = lambda_python or sys.executable
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    import_target = packaging.Target(host.architecture, version)
    probed = deployed if import_target == deployed_target else packages(import_target, python)

    print(f"stage {args.stage}: {config.architecture}, python {packaging.PYTHON_VERSION}, packages in infra/.build/")
    note = "" if import_target == deployed_target else f" (this host's build: {host.architecture}, python {version})"
    print(f"import times: median of {args.runs} fresh interpreters{note}")
    print()
    header = f"{'function':<16}{'zipped MB':>10}{'unzipped MB':>12}{'import ms':>11}{'no pyc':>9}{'+SDKs':>9}  layers"
    print(header)
    print("-" * len(header))
    zip_cache: dict[Path, int] = {}
    for package, probe in zip(deployed, probed, strict=True):
        spec = package.spec
        zipped = sum(zipped_size(directory, zip_cache) for directory in package.directories) / MB
        unzipped = sum(packaging.directory_size(directory) for directory in package.directories) / MB
        statement = f"import {spec.entry_module}"
        shipped = import_time(python, probe, statement, args.runs, use_pyc=True)
        no_pyc = import_time(python, probe, statement, args.runs, use_pyc=False)
        sdks = (
            f"{import_time(python, probe, f'{statement}; {SDK_IMPORTS}', args.runs, use_pyc=True):>9.0f}"
            if spec.providers
            else f"{'-':>9}"
        )
        layers = "core+providers" if spec.providers else "core"
        print(f"{spec.logical_id:<16}{zipped:>10.1f}{unzipped:>12.1f}{shipped:>11.0f}{no_pyc:>9.0f}{sdks}  {layers}")
    print()
    for name, directory in (
        ("code (workers)", deployed[1].code),
        ("code (API)", deployed[0].code),
        ("core layer", deployed[0].layers[0]),
        ("providers layer", deployed[0].layers[1]),
    ):
        print(
            f"{name:<16}{zipped_size(directory, zip_cache) / MB:>10.1f}"
            f"{packaging.directory_size(directory) / MB:>12.1f}"
        )


if __name__ == "__main__":
    main()
