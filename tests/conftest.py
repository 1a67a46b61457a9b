"""Shared fixtures: one AWS emulator (moto's server over HTTP) per test session, and a fresh,
isolated set of hub resources (table + queues, uniquely prefixed) per test that needs one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local.emulator import AwsEmulator, boto3_client, create_resources

_counter = itertools.count()


@pytest.fixture(scope="session")
def emulator() -> Iterator[AwsEmulator]:
    running = AwsEmulator().start()
    yield running
    running.stop()


@dataclass
class Hub:
    """The in-process hub's resources and the boto3 clients tests inspect them with."""

    emulator_url: str
    resources: dict[str, str]

    def client(self, service: str) -> Any:
        return boto3_client(service, self.emulator_url)

    @property
    def table_name(self) -> str:
        return self.resources["TABLE_NAME"]

    @property
    def routing_queue_url(self) -> str:
        return self.resources["ROUTING_QUEUE_URL"]

    def routing_messages(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive (and leave invisible) what is on the routing queue."""
        sqs = self.client("sqs")
        received: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.routing_queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait_seconds,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return received
            received.extend(batch)

    def run_timers(self) -> int:
        """Run the timer worker (handlers/timers.py) on every timer on the queue now, as Lambda
        would; returns how many ran. A timer not yet due is sent again by the worker itself."""
        from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

        from handlers import timers

        sqs = self.client("sqs")
        url = self.resources["TIMER_QUEUE_URL"]
        ran = 0
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                timers.record_handler(SQSRecord({"messageId": message["MessageId"], "body": message["Body"]}))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                ran += 1
        return ran

    def item_count(self) -> int:
        return int(self.client("dynamodb").scan(TableName=self.table_name, Select="COUNT")["Count"])


def _empty_names(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("ExpressionAttributeNames") == {} or value.get("ExpressionAttributeValues") == {}:
            return True
        return any(_empty_names(item) for item in value.values())
    if isinstance(value, list):
        return any(_empty_names(item) for item in value)
    return False


def _refuse_what_dynamodb_refuses(params: dict[str, Any], **_: Any) -> None:
    """moto accepts empty expression maps; DynamoDB answers ValidationException. Fail the test here."""
    assert not _empty_names(params), f"empty ExpressionAttributeNames/Values would be refused by DynamoDB: {params}"


@pytest.fixture
def hub(emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    from chalicelib import aws
    from chalicelib.config import settings

    prefix = f"t{os.getpid()}-{next(_counter)}-"
    resources = create_resources(emulator.url, prefix=prefix)
    environment = {
        **emulator.environment(),
        **resources,
        "HUB_API_KEY": "test-api-key",
        "TWILIO_AUTH_TOKEN": "test-twilio-token",
        "SENDGRID_INBOUND_TOKEN": "test-sendgrid-token",
        "PUBLIC_BASE_URL": "https://hub.example.com",
        "DEFAULT_PHONE_REGION": "US",
        "LINK_SECRET": "test-link-secret",
        "UNSUBSCRIBE_SECRET": "test-unsubscribe-secret",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    aws.reset()
    aws.session().events.register("before-parameter-build.dynamodb", _refuse_what_dynamodb_refuses)
    yield Hub(emulator.url, resources)
    settings.cache_clear()
    aws.reset()
