"""What differs between the dev and prod deployments, in one place.

Everything else (resources, grants, alarms) is the same code for both stages; a new stage is one
more entry in STAGES and a matching entry under "stages" in .chalice/config.json.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageConfig:
    name: str
    # Lambda
    architecture: str = "arm64"  # "arm64" (cheaper per GB-second) or "x86_64"
    api_memory_mb: int = 512
    api_timeout_seconds: int = 15  # Twilio gives up on a webhook after 15 s
    worker_memory_mb: int = 512
    # Upper bound on concurrent worker invocations per queue (protects the table and the CRM).
    worker_max_concurrency: int = 5
    log_retention_days: int = 14
    # API Gateway stage throttling (steady requests per second, burst)
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    # Alarms
    api_5xx_rate_threshold: float = 0.05  # fraction of requests answered 5xx over 5 minutes
    routing_age_threshold_seconds: int = 300  # oldest routing task waiting longer than this
    # Data
    retain_data: bool = False  # RETAIN + deletion protection for the table, log groups kept
    # The event history in S3 (read by Athena): moved to S3 Standard-IA after this many days
    # (None: never; S3 moves no object under 128 KB), deleted after this many. The bucket itself
    # outlives the stack in every stage.
    event_history_infrequent_access_days: int | None = None
    event_history_expire_days: int = 30


STAGES: dict[str, StageConfig] = {
    "dev": StageConfig(name="dev"),
    "prod": StageConfig(
        name="prod",
        api_memory_mb=1024,
        worker_memory_mb=1024,
        worker_max_concurrency=50,
        log_retention_days=90,
        api_rate_limit=500,
        api_burst_limit=1000,
        api_5xx_rate_threshold=0.01,
        retain_data=True,
        event_history_infrequent_access_days=90,
        event_history_expire_days=3 * 365,
    ),
}


def stage_config(name: str) -> StageConfig:
    try:
        return STAGES[name]
    except KeyError:
        raise SystemExit(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}") from None
