"""Speed-ups for the embedded emulator (moto's server), applied by the local stack (`make run`,
the end-to-end tests) and the benchmarks: they remove costs of moto, none of them the hub's,
that grow with the table (a full table copy before each transaction, a sort of every item for
each Query) so a roster of thousands of agents stays usable locally. Answers and request counts
are unchanged; chalicelib/ never imports this.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any


class _CopyOnWriteTables:
    """Stands in for the `copy` module inside moto.dynamodb.models (see `speed_up_emulator`)."""

    def __init__(self, real: Any, table_type: type) -> None:
        self._real = real
        self._table_type = table_type
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        snapshots = getattr(self._local, "snapshots", None)
        if snapshots is None or not isinstance(value, self._table_type):
            return self._real.deepcopy(value, memo)
        if id(value) not in snapshots:
            snapshots[id(value)] = self._snapshot(value)
        return snapshots[id(value)]

    def _snapshot(self, table: Any) -> Any:
        """The table with its own item index, sharing the Item objects (copied before any changes)."""
        snapshot = self._real.copy(table)
        snapshot.items = defaultdict(dict)
        for hash_key, value in table.items.items():
            snapshot.items[hash_key] = dict(value) if isinstance(value, dict) else value
        return snapshot

    def _private_item(self, backend: Any, table_name: str, key: Any) -> None:
        """UpdateItem changes the stored Item in place: give the live table its own copy first, so
        the snapshot keeps the original."""
        try:
            table = backend.get_table(table_name)
            hash_value, range_value = backend.get_keys_value(table, key)
        except Exception:
            return  # the update itself reports the problem
        if table.range_key_attr is None:
            current = table.items.get(hash_value)
            if current is not None:
                table.items[hash_value] = self._real.deepcopy(current)
        elif range_value is not None:
            current = table.items.get(hash_value, {}).get(range_value)
            if current is not None:
                table.items[hash_value][range_value] = self._real.deepcopy(current)

    def wrap_transaction(self, transact_write_items: Any) -> Any:
        def copy_on_write(backend: Any, *args: Any, **kwargs: Any) -> Any:
            self._local.snapshots = {}
            try:
                return transact_write_items(backend, *args, **kwargs)
            finally:
                self._local.snapshots = None

        copy_on_write.patched_by_bench = True  # type: ignore[attr-defined]
        return copy_on_write

    def wrap_update(self, update_item: Any) -> Any:
        def update_own_copy(backend: Any, table_name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "snapshots", None) is not None:
                self._private_item(backend, table_name, key)
            return update_item(backend, table_name, key, *args, **kwargs)

        return update_own_copy


def _one_partition(query: Any) -> Any:
    """moto's Table.query sorts every item of the table to find one partition's; give it just the
    partition (a base-table query; index queries are left alone). The results are the same."""

    def query_one_partition(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None or hash_key is None:
            return query(table, hash_key, *args, **kwargs)
        partition = table.items.get(hash_key)
        if partition is None:
            items = []
        elif isinstance(partition, dict):
            items = list(partition.values())
        else:
            items = [partition]
        table.all_items = lambda: items
        try:
            return query(table, hash_key, *args, **kwargs)
        finally:
            del table.all_items

    return query_one_partition


# DynamoDB operations whose results are items (or nothing) in DynamoDB's own JSON form.
ITEM_OPERATIONS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "TransactWriteItems", "BatchGetItem"}
)


def _json_item_results(execute_result: Any) -> Any:
    def json_item_result(result: Any, context: Any) -> Any:
        if (
            context.service_model.service_name == "dynamodb"
            and context.operation_model.name in ITEM_OPERATIONS
            and isinstance(result.result, dict)
        ):
            try:
                body = json.dumps(result.result)
            except (TypeError, ValueError):
                return execute_result(result, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return execute_result(result, context)

    json_item_result.patched_by_bench = True  # type: ignore[attr-defined]
    return json_item_result


def _clock_millis(unix_time_millis: Any) -> Any:
    def now_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(unix_time_millis(dt))

    now_millis.patched_by_bench = True  # type: ignore[attr-defined]
    return now_millis


def speed_up_emulator() -> None:
    """Remove five costs of moto's server, none of them the hub's, that dominate a long run.

    - Dispatch: moto lists and stat()s its own package directory (about 200 entries), under one
      lock, on every request to find the backend; the listing is read once instead.
    - TransactWriteItems: moto deep-copies each table it touches before applying a transaction,
      to roll back on failure; instead the snapshot copies only the table's index of items and
      shares the Item objects, and an Item that UpdateItem is about to change in place is first
      replaced by its own copy in the live table. The rollback restores exactly what the full copy
      would.
    - Query: moto sorts every item of the table to pick out one partition; a base-table query is
      handed just that partition and sorts it the same way.
    - SQS: moto checks each message's visibility and delay against the time, read through a
      timezone-naive datetime each time; on every ReceiveMessage and each wake-up of a long poll
      it checks every message of the queue (the timer queue holds two delayed timers per
      conversation). The time is read with time.time() instead.
    - Responses: moto re-serialises every result by walking botocore's output shape, which costs
      more than the operation itself; the results of DynamoDB's item operations are already in
      DynamoDB's JSON form, so they are written with json.dumps (anything it cannot write, and
      every error, still goes through moto's serializer).

    Request counts are unaffected. Use instead of `patch_emulator` (which it supersedes).
    """
    from moto import backends
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    if not getattr(backends.list_of_moto_modules, "patched_by_bench", False):
        modules = tuple(backends.list_of_moto_modules())

        def listed_once() -> tuple[str, ...]:
            return modules

        listed_once.patched_by_bench = True  # type: ignore[attr-defined]
        backends.list_of_moto_modules = listed_once  # type: ignore[assignment]

    backend = models.DynamoDBBackend
    if not getattr(backend.transact_write_items, "patched_by_bench", False):
        shim = _CopyOnWriteTables(models.copy, models.Table)
        models.copy = shim  # type: ignore[assignment]
        backend.transact_write_items = shim.wrap_transaction(backend.transact_write_items)  # type: ignore[method-assign]
        backend.update_item = shim.wrap_update(backend.update_item)  # type: ignore[method-assign]
        Table.query = _one_partition(Table.query)  # type: ignore[method-assign]

    from moto.sqs import models as sqs_models

    if not getattr(sqs_models.unix_time_millis, "patched_by_bench", False):
        sqs_models.unix_time_millis = _clock_millis(sqs_models.unix_time_millis)  # type: ignore[assignment]

    from moto.core.responses import ActionResult

    if not getattr(ActionResult.execute_result, "patched_by_bench", False):
        ActionResult.execute_result = _json_item_results(ActionResult.execute_result)  # type: ignore[method-assign]
