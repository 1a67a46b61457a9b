"""The layers of ../shared/ARCHITECTURE.md hold: imports point down and never form a cycle.

Every import counts, including those inside functions (the code imports lazily to keep cold
starts cheap, and a lazy import hides a cycle without removing it) and module names given to
importlib as strings (the channel registry). Read from the source: nothing is imported.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_MODULE_STRING = re.compile(r"chalicelib(\.\w+)+")

# (importer prefix, imported prefix): an import from the first into the second is forbidden.
FORBIDDEN = [
    ("chalicelib.domain", "chalicelib.store"),
    ("chalicelib.domain", "chalicelib.channels"),
    ("chalicelib.domain", "chalicelib.services"),
    ("chalicelib.domain", "chalicelib.aws"),
    ("chalicelib.domain", "chalicelib.queue"),
    ("chalicelib.channels", "chalicelib.store"),
    ("chalicelib.channels", "chalicelib.services"),
    ("chalicelib.store", "chalicelib.services"),
    ("chalicelib.store", "chalicelib.channels"),
    ("app", "chalicelib.store"),
    ("handlers", "chalicelib.store"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    files = [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]
    return {_module_name(path): path for path in sorted(files)}


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name lands in (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules():
            return candidate
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


@cache
def imports_of(module: str) -> frozenset[str]:
    path = modules()[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path).split(".")
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            names = [node.value]  # importlib.import_module("chalicelib....") through a registry table
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return frozenset(found)


def graph() -> dict[str, frozenset[str]]:
    return {module: imports_of(module) for module in modules()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_reader_sees_imports_inside_functions_and_registry_tables() -> None:
    assert "chalicelib.services.webhook_intake" in imports_of("app")  # imported inside a route
    assert "chalicelib.channels.telegram" in imports_of("chalicelib.channels.registry")  # a module-name string


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_cycle_among_project_modules() -> None:
    found = cycles(graph())
    assert found == [], "import cycles (imports inside functions count): " + "; ".join(
        " <-> ".join(component) for component in found
    )


def test_imports_point_down_the_layers() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        for importer, imported in FORBIDDEN
        if _within(module, importer) and _within(target, imported)
    )
    assert wrong == []


def test_only_config_reads_the_environment() -> None:
    readers = sorted(
        module
        for module, path in modules().items()
        if module != "chalicelib.config" and re.search(r"\bos\.environ\b|\bos\.getenv\b", path.read_text())
    )
    assert readers == []
