"""Lambda packages, built at synth time and cached under infra/.build/ (git-ignored).

- Two dependency layers from requirements.txt, installed from PyPI wheels for Lambda's platform:
  "core" (everything but the provider SDKs) on every function, "providers" (twilio, sendgrid and
  what only they need) only on functions that send. One resolution: the providers layer is
  installed under the core layer's exact versions and drops whatever core already holds.
- The code bundle: handlers/ and chalicelib/ for the workers.
- A staging copy of the Chalice app (app.py, chalicelib/, .chalice/config.json) with an empty
  requirements.txt, so `chalice package` ships only our code and the API uses the same layers.

Everything is byte-compiled for Lambda's Python (hash-based .pyc, unchecked) when that
interpreter is available here: /opt and /var/task are read-only in Lambda, so without shipped
bytecode every cold start compiles every module it imports.

Each build lands in a directory named after a hash of its inputs (requirements, platform, code),
so a repeated synth reuses it; a file lock lets parallel synths share one build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "infra" / ".build"
BUILDER_VERSION = "3"  # bump to invalidate every cached build

PYTHON_VERSION = "3.12"  # Lambda runtime of every function
PROVIDER_PACKAGES = frozenset({"twilio", "sendgrid"})
# Imported directly by chalicelib/services/crm_delivery.py (the CRM events worker, which has no
# providers layer). Lambda's runtime carries a urllib3 for botocore, but not one we chose.
EXTRA_CORE_REQUIREMENTS = ("urllib3==2.8.0",)
# Data no code path loads: phonenumbers' geocoder, carrier and timezone tables (we only parse,
# check and format numbers: chalicelib/domain/identity.py), type stubs, console scripts, and the
# stray top-level test package sendgrid ships (which would shadow the standard library's).
PRUNE_DIRS = ("phonenumbers/geodata", "phonenumbers/carrierdata", "phonenumbers/tzdata", "bin", "test", "tests")
PRUNE_SUFFIXES = (".pyi",)
# Not byte-compiled: twilio's REST domains other than `api` (Messages lives in api.v2010), 25 MB
# of bytecode for modules the hub never imports. Anything that does import them still works (it
# compiles them in memory, as without shipped bytecode).
NO_BYTECODE = r"/twilio/rest/(?!api/|__init__\.py)[^/]+/"

PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}


@dataclass(frozen=True)
class Target:
    architecture: str  # "arm64" | "x86_64"
    python_version: str = PYTHON_VERSION

    @property
    def platform(self) -> str:
        return PLATFORMS[self.architecture]

    @classmethod
    def host(cls) -> Target:
        import platform

        machine = platform.machine().lower()
        return cls("arm64" if machine in {"aarch64", "arm64"} else "x86_64")


@dataclass(frozen=True)
class Layers:
    core: Path  # the layer's root: holds python/
    providers: Path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])


def requirement_sets(requirements: Path | None = None) -> tuple[list[str], list[str]]:
    """(core, providers) requirement lines of requirements.txt."""
    lines = [
        line.split("#", 1)[0].strip() for line in (requirements or REPO / "requirements.txt").read_text().splitlines()
    ]
    lines = [line for line in lines if line and not line.startswith("-")]
    providers = [line for line in lines if _requirement_name(line) in PROVIDER_PACKAGES]
    core = [line for line in lines if _requirement_name(line) not in PROVIDER_PACKAGES]
    return core + list(EXTRA_CORE_REQUIREMENTS), providers


def lambda_python(version: str = PYTHON_VERSION) -> str | None:
    """An interpreter of Lambda's Python version, to byte-compile for it (None if there is none)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [str(path) for path in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))]
    candidates += [found for found in [shutil.which(f"python{version}")] if found]
    for candidate in candidates:
        probe = subprocess.run(  # noqa: S603 (a pyenv shim may name a version it cannot run)
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / f".lock-{name}", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


def _pip_install(target_dir: Path, requirements: list[str], target: Target, constraints: Path | None = None) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target_dir),
        "--platform",
        target.platform,
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        "--only-binary=:all:",
        "--no-compile",
    ]
    if constraints is not None:
        command += ["--constraint", str(constraints)]
    _run([*command, *requirements])


def _distributions(site: Path) -> dict[str, Path]:
    """Normalised distribution name -> its .dist-info directory."""
    found = {}
    for info in site.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        name = re.search(r"^Name:\s*(.+)$", metadata, re.MULTILINE)
        if name:
            found[_normalise(name.group(1).strip())] = info
    return found


def _version(info: Path) -> str:
    metadata = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^Version:\s*(.+)$", metadata, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _remove_distribution(site: Path, info: Path) -> None:
    record = info / "RECORD"
    if record.exists():
        for row in record.read_text().splitlines():
            relative = row.split(",", 1)[0]
            path = (site / relative).resolve()
            if path.is_relative_to(site.resolve()) and path.is_file():
                path.unlink()
    shutil.rmtree(info, ignore_errors=True)
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def _prune(site: Path) -> None:
    for relative in PRUNE_DIRS:
        shutil.rmtree(site / relative, ignore_errors=True)
    for path in list(site.rglob("*")):
        if path.is_file() and path.suffix in PRUNE_SUFFIXES:
            path.unlink()
        elif path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path, ignore_errors=True)


def _compile(root: Path, runtime_prefix: str, python: str | None) -> None:
    """Byte-compile for Lambda: the .pyc name the source as Lambda sees it (runtime_prefix)."""
    if python is None:
        return
    _run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-x",
            NO_BYTECODE,
            "-s",
            str(root),
            "-p",
            runtime_prefix,
            str(root),
        ]
    )


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """A staging directory that becomes `final` (with its .complete marker) only if the build
    succeeds; a failed build leaves nothing behind."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".complete").write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def build_layers(target: Target, compile_python: str | None = None, requirements: Path | None = None) -> Layers:
    core_requirements, provider_requirements = requirement_sets(requirements)
    python = compile_python if compile_python is not None else lambda_python(target.python_version)
    key = _digest(
        BUILDER_VERSION,
        target,
        core_requirements,
        provider_requirements,
        PRUNE_DIRS,
        PRUNE_SUFFIXES,
        NO_BYTECODE,
        bool(python),
    )
    final = BUILD / "layers" / f"{target.architecture}-py{target.python_version}-{key}"
    layers = Layers(core=final / "core", providers=final / "providers")
    if (final / ".complete").exists():
        return layers
    with _locked(f"layers-{key}"):
        if (final / ".complete").exists():
            return layers
        with _building(final) as staging:
            core_site = staging / "core" / "python"
            providers_site = staging / "providers" / "python"
            _pip_install(core_site, core_requirements, target)
            core_dists = _distributions(core_site)
            constraints = staging / "core-constraints.txt"
            constraints.write_text("".join(f"{name}=={_version(info)}\n" for name, info in sorted(core_dists.items())))
            _pip_install(providers_site, provider_requirements, target, constraints=constraints)
            for name, info in _distributions(providers_site).items():
                if name in core_dists:
                    _remove_distribution(providers_site, info)
            for site in (core_site, providers_site):
                _prune(site)
                _compile(site, "/opt/python", python)
        return layers


def _source_files(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
                files.append(path)
    return files


def build_code(compile_python: str | None = None) -> Path:
    """handlers/ + chalicelib/ for the worker functions (Lambda's /var/task)."""
    python = compile_python if compile_python is not None else lambda_python()
    files = _source_files([REPO / "handlers", REPO / "chalicelib"])
    key = _digest(
        BUILDER_VERSION,
        bool(python),
        [(str(path.relative_to(REPO)), hashlib.sha256(path.read_bytes()).hexdigest()) for path in files],
    )
    final = BUILD / "code" / key
    bundle = final / "bundle"
    if (final / ".complete").exists():
        return bundle
    with _locked(f"code-{key}"):
        if (final / ".complete").exists():
            return bundle
        with _building(final) as staging:
            for path in files:
                destination = staging / "bundle" / path.relative_to(REPO)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
            _compile(staging / "bundle", "/var/task", python)
        return bundle


def stage_chalice_app(stage: str, code: Path) -> Path:
    """A Chalice project directory holding only what the API function runs (dependencies come
    from the layers), rebuilt on every synth: chalice.out/ is written beside it."""
    root = BUILD / "chalice" / stage
    source = root / "app"
    shutil.rmtree(root, ignore_errors=True)
    (source / ".chalice").mkdir(parents=True)
    shutil.copy2(REPO / "app.py", source / "app.py")
    shutil.copy2(REPO / ".chalice" / "config.json", source / ".chalice" / "config.json")
    shutil.copytree(code / "chalicelib", source / "chalicelib")
    (source / "requirements.txt").write_text("# dependencies come from the Lambda layers (infra/packaging.py)\n")
    return source


def build_key(directory: Path) -> str:
    """The input hash a directory from build_layers() or build_code() was built from."""
    built = next(parent for parent in [directory, *directory.parents] if (parent / ".complete").exists())
    return f"{built.name}-{directory.name}"


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
