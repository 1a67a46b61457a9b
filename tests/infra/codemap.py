"""What a Lambda entry point's code can touch, read from the source (no import, no AWS).

The closure of an entry point is every project module it can import, including imports made
inside functions (the code imports lazily to keep cold starts cheap) and the modules named in
chalicelib/channels/registry.py. It over-approximates what one invocation runs, never under.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("app", "chalicelib", "handlers")
SECRET_CALL = re.compile(r"""(?<![\w.])secret\(\s*["'](\w+)["']\s*\)""")
# settings() fields naming a queue URL -> the queue it names (infra/definitions.py logical ids)
QUEUE_SETTINGS = {
    "routing_queue_url": "RoutingQueue",
    "timer_queue_url": "TimerQueue",
    "crm_events_queue_url": "CrmEventsQueue",
    "crm_events_queue_dlq_url": "CrmEventsQueue.dlq",
}


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(_parsed(path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"(chalicelib|handlers)(\.\w+)+", node.value)
        ):
            # importlib.import_module("chalicelib...") and registry tables of module names
            found.add(node.value)
    return found


@cache
def closure(entry: str) -> dict[str, Path]:
    seen: dict[str, Path] = {}
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        path = module_path(module)
        if path is None:
            continue
        seen[module] = path
        # a module's packages run first (their __init__ may import more)
        parts = module.split(".")
        pending += [".".join(parts[:index]) for index in range(1, len(parts))]
        pending += [name for name in _imports(path) if name.split(".")[0] in PROJECT_PACKAGES]
    return seen


def _source(entry: str) -> dict[str, str]:
    return {module: path.read_text(encoding="utf-8") for module, path in closure(entry).items()}


def secrets(entry: str) -> set[str]:
    return {name for text in _source(entry).values() for name in SECRET_CALL.findall(text)}


def all_secrets() -> set[str]:
    files = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py")), *sorted((ROOT / "handlers").rglob("*.py"))]
    return {name for path in files for name in SECRET_CALL.findall(path.read_text(encoding="utf-8"))}


def queues(entry: str) -> set[str]:
    """The queues whose URL setting the entry point's code reads (outside config.py, which
    declares them all)."""
    used = set()
    for module, text in _source(entry).items():
        if module == "chalicelib.config":
            continue
        for setting, queue in QUEUE_SETTINGS.items():
            if re.search(rf"\b{setting}\b", text):
                used.add(queue)
        # services/events.py wraps the CRM queue URL in queue_url()
    return used


def third_party(entry: str) -> dict[str, set[str]]:
    """Top-level distributions-to-be (import names) outside the project and the standard library
    -> the project modules importing them."""
    found: dict[str, set[str]] = {}
    for module, path in closure(entry).items():
        for node in ast.walk(_parsed(path)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT_PACKAGES or top == "__future__" or top in sys.stdlib_module_names:
                    continue
                found.setdefault(top, set()).add(module)
    return found


def imported_names(entry: str) -> set[str]:
    """Every dotted name the closure imports (project or not)."""
    names: set[str] = set()
    for path in closure(entry).values():
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


# boto3 DynamoDB client calls and transaction items -> the IAM actions they need
_DYNAMODB_CALLS = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_get_item": "BatchGetItem",
    "batch_write_item": "BatchWriteItem",
    "transact_get_items": "GetItem",
    "execute_statement": "PartiQLSelect",
}
_TRANSACTION_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def dynamodb_actions() -> set[str]:
    """IAM actions the table code needs: the client calls it makes and the kinds of item its
    transactions carry (chalicelib/store is the only code that talks to DynamoDB)."""
    actions = set()
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for call, action in _DYNAMODB_CALLS.items():
            if re.search(rf"\.{call}\(", text) and ("dynamodb" in text or "table." in text or "client" in text):
                actions.add(action)
        if "transact_write_items" in text or "store" in path.parts:
            for item, action in _TRANSACTION_ITEMS.items():
                if re.search(rf"""["']{item}["']\s*:""", text):
                    actions.add(action)
    return {f"dynamodb:{action}" for action in actions}
