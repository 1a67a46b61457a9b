"""An embedded AWS emulator (moto's server) and the hub's resources inside it.

moto's threaded server does not make one DynamoDB request atomic against another (two
transactions could interleave inside the emulator), which real DynamoDB does. DynamoDB requests
are therefore served one at a time here, so the races the tests provoke are the hub's own, not
the emulator's. Other services (SQS long polls) stay concurrent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from infra.definitions import EVENT_LOG, QUEUES, TABLE, QueueDefinition

REGION = "us-east-1"
# How often the servers' loops look for a shutdown request: Ctrl-C must stop `make run` promptly.
SERVE_POLL_SECONDS = 0.05
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}


class _OneDynamoDBRequestAtATime:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


class AwsEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        from local import firehose

        firehose.install()  # the event history lands under events/dt=YYYY-MM-DD/, as in AWS

        class QuietRequestHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                """One line per AWS call would drown the hub's own logs."""

        app = _OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
        # Request threads are daemons (werkzeug's threaded server): a long SQS receive in flight
        # never holds up the process's exit. A short poll interval makes shutdown() prompt.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_SECONDS},
            name="aws-emulator",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AwsEmulator:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving and close the socket. Requests under way are not waited for (`timeout`
        is accepted for symmetry with the stack's other parts; stopping never waits on them)."""
        if self._thread.is_alive():
            self._server.shutdown()  # returns within one poll interval
        self._server.server_close()

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment to use this emulator through boto3."""
        return {"AWS_ENDPOINT_URL": self.url, **CREDENTIALS}


def boto3_client(service: str, endpoint_url: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _create_queue(sqs: Any, definition: QueueDefinition, prefix: str) -> tuple[str, str, str]:
    dead_letter_url = sqs.create_queue(
        QueueName=prefix + definition.dead_letter_name, Attributes=definition.dead_letter_attributes()
    )["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=prefix + definition.name, Attributes=definition.create_queue_attributes(dead_letter_arn)
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dead_letter_url


def create_resources(endpoint_url: str, prefix: str = "") -> dict[str, str]:
    """Create the table, the queues and the event history (bucket and Firehose stream) from
    infra's definitions; returns the settings that name them.

    `prefix` keeps several independent hubs apart inside one emulator (tests use it)."""
    dynamodb = boto3_client("dynamodb", endpoint_url)
    table_name = prefix + TABLE.default_name
    dynamodb.create_table(**TABLE.create_table_kwargs(table_name))
    settings = {TABLE.name_env: table_name}
    sqs = boto3_client("sqs", endpoint_url)
    for definition in QUEUES:
        url, arn, dead_letter_url = _create_queue(sqs, definition, prefix)
        settings[definition.url_env] = url
        settings[definition.url_env.replace("_URL", "_ARN")] = arn
        settings[definition.url_env.replace("_URL", "_DLQ_URL")] = dead_letter_url
    settings.update(create_event_log(endpoint_url, prefix))
    return settings


def create_event_log(endpoint_url: str, prefix: str = "") -> dict[str, str]:
    """The event history's bucket and Firehose stream, with the destination infra/ deploys
    (prefix `events/dt=!{timestamp:yyyy-MM-dd}/`, which local/firehose.py makes moto evaluate).
    moto writes each record to the bucket at once, uncompressed; returns the stream's setting and
    the bucket's name (`EVENT_LOG_BUCKET`, for tests and the banner; the code never reads it)."""
    bucket = (prefix + EVENT_LOG.bucket_name).lower().replace("_", "-")
    stream = prefix + EVENT_LOG.stream_name
    boto3_client("s3", endpoint_url).create_bucket(**EVENT_LOG.create_bucket_kwargs(bucket))
    role = "arn:aws:iam::123456789012:role/omnihub-event-log"  # the emulator checks no role
    boto3_client("firehose", endpoint_url).create_delivery_stream(
        **EVENT_LOG.create_stream_kwargs(stream, bucket, role)
    )
    return {EVENT_LOG.stream_env: stream, "EVENT_LOG_BUCKET": bucket}
