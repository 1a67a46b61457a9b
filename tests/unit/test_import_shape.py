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


SEND_NAMES = {"send", "send_message", "send_email"}


def channel_send_calls(path: Path) -> list[int]:
    """Lines of the calls in a file that hand a message to a channel: `<channel module>.send(...)`,
    `registry.channel(...).send(...)`, a name bound to `registry.channel(...)` then `.send(...)`,
    and `send_message`/`send_email` imported from a channel."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    channel_names: set[str] = set()
    send_functions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chalicelib.channels"):
            for alias in node.names:
                bound = alias.asname or alias.name
                (send_functions if alias.name in SEND_NAMES else channel_names).add(bound)
        elif isinstance(node, ast.Import):
            channel_names |= {a.asname for a in node.names if a.name.startswith("chalicelib.channels") and a.asname}

    def is_registry_lookup(value: ast.AST) -> bool:
        return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "channel"

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and is_registry_lookup(node.value):
            channel_names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in send_functions:
            found.append(node.lineno)
        elif isinstance(func, ast.Attribute) and func.attr in SEND_NAMES:
            owner = func.value
            if (isinstance(owner, ast.Name) and owner.id in channel_names) or is_registry_lookup(owner):
                found.append(node.lineno)
    return found


def test_the_send_finder_sees_each_way_of_calling_a_channel(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from chalicelib.channels import registry, twilio\n"
        "from chalicelib.channels.sendgrid import send_email\n"
        "def a(o):\n"
        "    registry.channel('line').send(o)\n"
        "    module = registry.channel('meta')\n"
        "    module.send(o)\n"
        "    twilio.send_message(to='x')\n"
        "    send_email(to_email='x')\n"
        "    outbound.send(o)\n"
    )
    assert channel_send_calls(sample) == [4, 6, 7, 8]


def test_only_the_outbound_service_calls_a_channels_send() -> None:
    """Every message the hub sends leaves through services/outbound.py: no module outside the
    channels themselves hands a message to a channel."""
    callers = {
        module: lines
        for module, path in modules().items()
        if not _within(module, "chalicelib.channels") and (lines := channel_send_calls(path))
    }
    assert list(callers) == ["chalicelib.services.outbound"], callers
    assert len(callers["chalicelib.services.outbound"]) == 1
