"""The hub's tables and queues, defined once.

The CDK stack and the local stack (`make run`, the tests) both build their resources from these
definitions, so what runs locally is what deploys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IndexDefinition:
    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    name_env: str  # the environment variable that tells the code the table's name
    default_name: str
    partition_key: str = "pk"
    sort_key: str = "sk"
    indexes: tuple[IndexDefinition, ...] = ()
    ttl_attribute: str | None = None

    def create_table_kwargs(self, name: str | None = None) -> dict[str, Any]:
        """Arguments for DynamoDB CreateTable (on-demand, string keys)."""
        attributes = {self.partition_key, self.sort_key}
        for index in self.indexes:
            attributes |= {index.partition_key, index.sort_key}
        kwargs: dict[str, Any] = {
            "TableName": name or self.default_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": attr, "AttributeType": "S"} for attr in sorted(attributes)],
            "KeySchema": [
                {"AttributeName": self.partition_key, "KeyType": "HASH"},
                {"AttributeName": self.sort_key, "KeyType": "RANGE"},
            ],
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in self.indexes
            ]
        return kwargs


@dataclass(frozen=True)
class QueueDefinition:
    logical_id: str
    url_env: str  # the environment variable that tells the code the queue's URL
    name: str
    fifo: bool
    visibility_timeout_seconds: int
    max_receive_count: int
    dead_letter_name: str
    content_based_deduplication: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def create_queue_attributes(self, dead_letter_arn: str) -> dict[str, str]:
        import json

        attributes = {
            "VisibilityTimeout": str(self.visibility_timeout_seconds),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(self.max_receive_count)}
            ),
            **self.extra,
        }
        if self.fifo:
            attributes["FifoQueue"] = "true"
            attributes["ContentBasedDeduplication"] = str(self.content_based_deduplication).lower()
        return attributes

    def dead_letter_attributes(self) -> dict[str, str]:
        # Dead letters are kept for the longest SQS allows so an operator has time to redrive.
        attributes = {"MessageRetentionPeriod": str(14 * 24 * 3600)}
        if self.fifo:
            attributes["FifoQueue"] = "true"
        return attributes


TABLE = TableDefinition(
    logical_id="HubTable",
    name_env="TABLE_NAME",
    default_name="omnihub",
    indexes=(IndexDefinition(name="gsi1", partition_key="gsi1pk", sort_key="gsi1sk"),),
    ttl_attribute="expires_at",
)

ROUTING_QUEUE = QueueDefinition(
    logical_id="RoutingQueue",
    url_env="ROUTING_QUEUE_URL",
    name="omnihub-routing.fifo",
    fifo=True,
    # Six times the routing worker's timeout, as AWS advises for Lambda event sources.
    visibility_timeout_seconds=180,
    max_receive_count=5,
    dead_letter_name="omnihub-routing-dlq.fifo",
)

# Timers (offer timeouts, sticky and skill-relaxation re-checks, grace periods) are SQS delays on
# this queue: moto and AWS both honour DelaySeconds up to 900 s, and nothing depends on TTL.
TIMER_QUEUE = QueueDefinition(
    logical_id="TimerQueue",
    url_env="TIMER_QUEUE_URL",
    name="omnihub-timers",
    fifo=False,
    visibility_timeout_seconds=180,
    max_receive_count=5,
    dead_letter_name="omnihub-timers-dlq",
)

# CRM events: one message per event, fanned out to each subscribed endpoint; retries of one
# endpoint's delivery come back here with a delay, so a slow CRM never holds up another.
CRM_EVENTS_QUEUE = QueueDefinition(
    logical_id="CrmEventsQueue",
    url_env="CRM_EVENTS_QUEUE_URL",
    name="omnihub-crm-events",
    fifo=False,
    visibility_timeout_seconds=180,
    max_receive_count=5,
    dead_letter_name="omnihub-crm-events-dlq",
)

QUEUES: tuple[QueueDefinition, ...] = (ROUTING_QUEUE, TIMER_QUEUE, CRM_EVENTS_QUEUE)


@dataclass(frozen=True)
class EventLogDefinition:
    """The event history: a Firehose stream (Direct PUT) writing NDJSON to a bucket, and the Glue
    table Athena reads it through (services/event_log.py writes one line per event).

    Objects land under `events/dt=YYYY-MM-DD/` (the UTC day Firehose received the records): the
    prefix's `!{timestamp:...}` expression makes the date, and the table's `dt` partition is
    projected onto the same path. The local stack creates the same stream in moto, which does not
    evaluate prefix expressions itself; local/firehose.py makes it write the same paths."""

    logical_id: str  # the delivery stream
    stream_env: str  # the setting that names the stream to the code
    stream_name: str
    bucket_name: str  # the local bucket (the deployed one gets a generated name)
    partition_key: str
    partition_format: str  # Java DateTimeFormatter, as Firehose and Athena's projection read it
    prefix: str
    error_prefix: str
    buffer_size_mb: int
    buffer_interval_seconds: int
    compression: str
    glue_database: str
    glue_table: str
    projection_start: str  # the first day the table's dt projection covers (the range ends NOW)

    @property
    def data_prefix(self) -> str:
        """The folder above the date partitions (`events/`), the table's location."""
        return self.prefix.split(f"{self.partition_key}=", 1)[0]

    def create_bucket_kwargs(self, name: str) -> dict[str, Any]:
        return {"Bucket": name}

    def create_stream_kwargs(self, stream: str, bucket: str, role_arn: str) -> dict[str, Any]:
        """Arguments for Firehose CreateDeliveryStream (the same destination infra/ deploys)."""
        return {
            "DeliveryStreamName": stream,
            "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": role_arn,
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "Prefix": self.prefix,
                "ErrorOutputPrefix": self.error_prefix,
                "BufferingHints": {
                    "SizeInMBs": self.buffer_size_mb,
                    "IntervalInSeconds": self.buffer_interval_seconds,
                },
                "CompressionFormat": self.compression,
            },
        }


EVENT_LOG = EventLogDefinition(
    logical_id="EventHistoryStream",
    stream_env="EVENT_LOG_STREAM",
    stream_name="omnihub-events",
    bucket_name="omnihub-events",
    partition_key="dt",
    partition_format="yyyy-MM-dd",
    prefix="events/dt=!{timestamp:yyyy-MM-dd}/",
    # Records Firehose could not deliver, by kind of error and day (it requires the error type
    # in the error prefix whenever the prefix holds an expression).
    error_prefix="errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
    # A file at least every 5 minutes, sooner past 64 MB (Athena prefers fewer, larger files).
    buffer_size_mb=64,
    buffer_interval_seconds=300,
    # GZIP in AWS (Firehose names the files .gz; Athena reads them by that suffix); moto stores
    # the records uncompressed whatever this says, which Athena would read as well.
    compression="GZIP",
    glue_database="omnihub",
    glue_table="events",
    projection_start="2025-01-01",
)
