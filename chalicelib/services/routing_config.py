"""The routing configuration (domain/routing.py RoutingConfig): queues, rules, timings, and who
takes each queue's new conversations first."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from chalicelib.config import settings
from chalicelib.domain.routing import RoutingConfig


@lru_cache(maxsize=1)
def routing_config() -> RoutingConfig:
    """Routing rules are data: the `routing_config` setting (JSON), else `routing_config_file` (a
    JSON file), else the defaults. Read once; `routing_config.cache_clear()` reads them again."""
    current = settings()
    raw = current.routing_config.strip()
    if raw:
        return RoutingConfig.model_validate_json(raw)
    path = current.routing_config_file.strip()
    if path:
        return RoutingConfig.model_validate_json(Path(path).read_text())
    return RoutingConfig()
