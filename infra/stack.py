"""The omnihub stack: table, queues, the Chalice API, the queue workers, alarms.

One stack per stage (infra/stages.py). The stack's construct id is the stage name because
chalice.cdk takes the Chalice stage (.chalice/config.json "stages") from it; the CloudFormation
stack is called omnihub-<stage>. It is environment-agnostic: account and region come from the
credentials `cdk deploy` runs with, so synthesis needs none.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, CfnCondition, CfnOutput, CfnParameter, Duration, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import packaging
from infra.definitions import EVENT_LOG, QUEUES, ROUTING_QUEUE, TABLE
from infra.functions import (
    API,
    CRM_EVENTS_DLQ,
    CRM_EVENTS_DLQ_URL_ENV,
    SECRETS,
    WORKERS,
    FunctionSpec,
    check_visibility_timeouts,
    parameter_name,
    queue_definition,
)
from infra.stages import StageConfig

APP = "omnihub"
METRICS_NAMESPACE = "Omnihub"
TABLE_ACTIONS = (
    # Keyed reads and writes, and the Put/Update/Delete items of TransactWriteItems (a transaction
    # has no action of its own). Never Scan. tests/infra re-derives this list from chalicelib/store.
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    # BatchGetItem: routing reads a message's conversation, customer and cycle head at once;
    # BatchWriteItem: store.agents.import_agents (a roster import). Same table, same items.
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
)
INDEX_ACTIONS = ("dynamodb:Query",)
NOT_FOUND_MESSAGE = "No route matches this method and path."

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def _chalice_config() -> dict[str, Any]:
    return json.loads((packaging.REPO / ".chalice" / "config.json").read_text())


def chalice_environment(stage: str) -> dict[str, str]:
    """The plain settings .chalice/config.json gives the app (global, then the stage's); the
    workers get them too."""
    config = _chalice_config()
    return {
        **config.get("environment_variables", {}),
        **config.get("stages", {}).get(stage, {}).get("environment_variables", {}),
    }


def api_gateway_stage(stage: str) -> str:
    config = _chalice_config()
    return str(
        config.get("stages", {}).get(stage, {}).get("api_gateway_stage") or config.get("api_gateway_stage", "api")
    )


def _camel(path: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", path) if part)


@contextlib.contextmanager
def _chalice_workdir(directory: Path) -> Iterator[None]:
    """chalice.cdk writes chalice.out/ into the current directory and imports app.py: keep both
    inside infra/.build/ and keep the import from writing bytecode into the staged app."""
    previous_cwd, previous_flag = Path.cwd(), sys.dont_write_bytecode
    os.chdir(directory)
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        sys.dont_write_bytecode = previous_flag


class OmnihubStack(Stack):
    def __init__(self, scope: Construct, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            config.name,
            stack_name=f"{APP}-{config.name}",
            description=f"omnihub omnichannel messaging hub ({config.name})",
            **kwargs,
        )
        check_visibility_timeouts()
        self.config = config
        self.api_function_name = f"{APP}-{config.name}-api"
        self.api_name = f"{APP}-{config.name}"
        self.api_stage = api_gateway_stage(config.name)
        Tags.of(self).add("app", APP)
        Tags.of(self).add("stage", config.name)

        self._parameters()
        self._data()
        self._event_history()
        self._packages()
        self.functions: dict[str, lambda_.IFunction] = {}
        self.roles: dict[str, iam.Role] = {}
        self._api()
        for spec in WORKERS:
            self._worker(spec)
        self._alarms()
        self._outputs()

    # --- Parameters ---------------------------------------------------------------------------

    def _parameters(self) -> None:
        self.alarm_email = CfnParameter(
            self,
            "AlarmEmail",
            type="String",
            default="",
            allowed_pattern=r"^$|^[^@\s]+@[^@\s]+$",
            description="Email address that receives alarm notifications (empty: no subscription)",
        )
        self.has_alarm_email = CfnCondition(
            self,
            "HasAlarmEmail",
            expression=Fn.condition_not(Fn.condition_equals(self.alarm_email.value_as_string, "")),
        )
        self.public_base_url_parameter = CfnParameter(
            self,
            "PublicBaseUrl",
            type="String",
            default="",
            allowed_pattern=r"^$|^https://[^\s]+[^/\s]$",
            description=(
                "The URL providers call, as they sign it, when the API sits behind a custom domain "
                "(no trailing slash). Empty: the API Gateway URL, stage included."
            ),
        )
        self.has_public_base_url = CfnCondition(
            self,
            "HasPublicBaseUrl",
            expression=Fn.condition_not(Fn.condition_equals(self.public_base_url_parameter.value_as_string, "")),
        )

    # --- Table and queues ---------------------------------------------------------------------

    def _data(self) -> None:
        config = self.config
        string = dynamodb.AttributeType.STRING
        self.table = dynamodb.Table(
            self,
            TABLE.logical_id,
            partition_key=dynamodb.Attribute(name=TABLE.partition_key, type=string),
            sort_key=dynamodb.Attribute(name=TABLE.sort_key, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=TABLE.ttl_attribute,
            deletion_protection=config.retain_data,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        self._fix_logical_id(self.table, TABLE.logical_id)
        for index in TABLE.indexes:
            self.table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(name=index.partition_key, type=string),
                sort_key=dynamodb.Attribute(name=index.sort_key, type=string),
                projection_type=dynamodb.ProjectionType.ALL,
            )

        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        for definition in QUEUES:
            fifo = True if definition.fifo else None
            # Named `<stage>-<definition name>` so operators and `python -m ops.dlq --prefix <stage>-`
            # find them by name in every account.
            dead_letters = sqs.Queue(
                self,
                f"{definition.logical_id}Dlq",
                queue_name=f"{self.config.name}-{definition.dead_letter_name}",
                fifo=fifo,
                retention_period=Duration.seconds(int(definition.dead_letter_attributes()["MessageRetentionPeriod"])),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
            )
            self._fix_logical_id(dead_letters, f"{definition.logical_id}Dlq")
            queue = sqs.Queue(
                self,
                definition.logical_id,
                queue_name=f"{self.config.name}-{definition.name}",
                fifo=fifo,
                content_based_deduplication=definition.content_based_deduplication if definition.fifo else None,
                visibility_timeout=Duration.seconds(definition.visibility_timeout_seconds),
                dead_letter_queue=sqs.DeadLetterQueue(
                    max_receive_count=definition.max_receive_count, queue=dead_letters
                ),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
            )
            self._fix_logical_id(queue, definition.logical_id)
            cfn_queue = queue.node.default_child
            assert isinstance(cfn_queue, sqs.CfnQueue)
            for attribute, value in definition.extra.items():
                cfn_queue.add_property_override(attribute, int(value) if value.isdigit() else value)
            self.queues[definition.logical_id] = queue
            self.dead_letter_queues[definition.logical_id] = dead_letters

    def _event_history(self) -> None:
        """Every event as NDJSON in S3 through Firehose, and a Glue table over it for Athena.

        Firehose (Direct PUT; the CRM events worker puts one record per event) writes GZIP files
        under `events/dt=YYYY-MM-DD/` (the UTC day it received them). The Glue table projects its
        `dt` partition onto that path, so a new day is queryable at once, with no crawler or
        MSCK REPAIR. The bucket is private, TLS-only, encrypted, kept when the stack is deleted,
        and expires objects per stage; only Firehose's role may write to it."""
        config = self.config
        transitions = (
            [
                s3.Transition(
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=Duration.days(config.event_history_infrequent_access_days),
                )
            ]
            if config.event_history_infrequent_access_days
            else None
        )
        self.event_bucket = s3.Bucket(
            self,
            "EventHistoryBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="event-history",
                    transitions=transitions,
                    expiration=Duration.days(config.event_history_expire_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # History is data: deleting the stack leaves the bucket (it empties itself by expiry).
            removal_policy=RemovalPolicy.RETAIN,
        )
        bucket = self.event_bucket
        data_prefix = EVENT_LOG.data_prefix
        error_folder = EVENT_LOG.error_prefix.split("!{", 1)[0]
        delivery_role = iam.Role(
            self,
            "EventHistoryDeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}
            ),
            description=f"omnihub {config.name}: Firehose writes the event history to its bucket",
        )
        # The S3 actions AWS documents for a Firehose S3 destination, on this bucket only, and
        # object writes only under the history's and the errors' folders.
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="EventHistoryObjects",
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{data_prefix}*"), bucket.arn_for_objects(f"{error_folder}*")],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="EventHistoryBucket",
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            )
        )
        stream_name = f"{config.name}-{EVENT_LOG.stream_name}"
        destination = EVENT_LOG.create_stream_kwargs(stream_name, "", "")["ExtendedS3DestinationConfiguration"]
        stream = firehose.CfnDeliveryStream
        self.event_stream = stream(
            self,
            EVENT_LOG.logical_id,
            delivery_stream_name=stream_name,
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=stream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="AWS_OWNED_CMK"
            ),
            extended_s3_destination_configuration=stream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket.bucket_arn,
                role_arn=delivery_role.role_arn,
                prefix=destination["Prefix"],
                error_output_prefix=destination["ErrorOutputPrefix"],
                buffering_hints=stream.BufferingHintsProperty(
                    interval_in_seconds=destination["BufferingHints"]["IntervalInSeconds"],
                    size_in_m_bs=destination["BufferingHints"]["SizeInMBs"],
                ),
                compression_format=destination["CompressionFormat"],
            ),
        )
        # Firehose checks its role's access when the stream is created.
        self.event_stream.node.add_dependency(delivery_role)

        self.event_database_name = f"{EVENT_LOG.glue_database}_{config.name}"
        database = glue.CfnDatabase(
            self,
            "EventHistoryDatabase",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.event_database_name, description=f"omnihub {config.name}: the event history (Athena)"
            ),
        )
        location = f"s3://{bucket.bucket_name}/{data_prefix}"
        key = EVENT_LOG.partition_key
        table = glue.CfnTable(
            self,
            "EventHistoryTable",
            catalog_id=Aws.ACCOUNT_ID,
            database_name=self.event_database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=EVENT_LOG.glue_table,
                description="one row per hub event (NDJSON, at least once: deduplicate on id); "
                "dt is the UTC day Firehose received it",
                table_type="EXTERNAL_TABLE",
                partition_keys=[glue.CfnTable.ColumnProperty(name=key, type="string")],
                parameters={
                    "EXTERNAL": "TRUE",
                    "classification": "json",
                    # Partition projection: Athena computes the partitions from these, so a new
                    # day needs no crawler, MSCK REPAIR or ALTER TABLE.
                    "projection.enabled": "true",
                    f"projection.{key}.type": "date",
                    f"projection.{key}.format": EVENT_LOG.partition_format,
                    f"projection.{key}.range": f"{EVENT_LOG.projection_start},NOW",
                    f"projection.{key}.interval": "1",
                    f"projection.{key}.interval.unit": "DAYS",
                    "storage.location.template": f"{location}{key}=${{{key}}}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe"
                    ),
                    # `data` is the event's payload as JSON text (the OpenX SerDe reads a nested
                    # object into a string column as its JSON): query it with json_extract_scalar.
                    columns=[
                        glue.CfnTable.ColumnProperty(name="id", type="string", comment="the event id (webhook-id)"),
                        glue.CfnTable.ColumnProperty(name="type", type="string", comment="e.g. message.created"),
                        glue.CfnTable.ColumnProperty(
                            name="timestamp", type="string", comment="when it happened, ISO 8601 UTC"
                        ),
                        glue.CfnTable.ColumnProperty(name="data", type="string", comment="the payload, as JSON"),
                    ],
                ),
            ),
        )
        table.add_dependency(database)

    @staticmethod
    def _fix_logical_id(construct: Construct, logical_id: str) -> None:
        """Keep the logical ids of infra/definitions.py (stable names for operators and tests)."""
        child = construct.node.default_child
        assert isinstance(child, cdk.CfnElement)
        child.override_logical_id(logical_id)

    # --- Packages -----------------------------------------------------------------------------

    def _packages(self) -> None:
        config = self.config
        arm = config.architecture == "arm64"
        self.architecture = lambda_.Architecture.ARM_64 if arm else lambda_.Architecture.X86_64
        target = packaging.Target(config.architecture)
        layers = packaging.build_layers(target)
        self.code_dir = packaging.build_code()
        runtime = lambda_.Runtime.PYTHON_3_12
        assert runtime.name == f"python{packaging.PYTHON_VERSION}"
        self.runtime = runtime
        self.core_layer = lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=self._asset(layers.core),
            compatible_runtimes=[runtime],
            compatible_architectures=[self.architecture],
            description="omnihub: powertools, pydantic, phonenumbers, standardwebhooks, PyJWT",
        )
        self.providers_layer = lambda_.LayerVersion(
            self,
            "ProvidersLayer",
            code=self._asset(layers.providers),
            compatible_runtimes=[runtime],
            compatible_architectures=[self.architecture],
            description="omnihub: the twilio and sendgrid SDKs (functions that send only)",
        )

    @staticmethod
    def _asset(directory: Path) -> lambda_.Code:
        """A build directory as a Lambda asset. Its path already names a hash of everything it was
        built from (infra/packaging.py), so CDK need not fingerprint ~100 MB on every synth."""
        return lambda_.Code.from_asset(
            str(directory), asset_hash_type=cdk.AssetHashType.CUSTOM, asset_hash=packaging.build_key(directory)
        )

    def _layers(self, spec: FunctionSpec) -> list[lambda_.ILayerVersion]:
        return [self.core_layer, self.providers_layer] if spec.providers else [self.core_layer]

    # --- Grants and environment shared by the API and the workers ------------------------------

    def _public_base_url(self, execute_api_url: str) -> str:
        """The PublicBaseUrl parameter when set (a custom domain), else the API Gateway URL."""
        return Fn.condition_if(
            self.has_public_base_url.logical_id, self.public_base_url_parameter.value_as_string, execute_api_url
        ).to_string()

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        environment = {
            **chalice_environment(self.config.name),
            "POWERTOOLS_SERVICE_NAME": APP,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            TABLE.name_env: self.table.table_name,
        }
        for target in spec.sends_to:
            if target == CRM_EVENTS_DLQ:
                environment[CRM_EVENTS_DLQ_URL_ENV] = self._queue_target(target).queue_url
            else:
                environment[queue_definition(target).url_env] = self.queues[target].queue_url
        for secret in spec.secrets:
            environment[f"{secret.upper()}_PARAMETER"] = parameter_name(self.config.name, secret)
        if spec.event_log:
            environment[EVENT_LOG.stream_env] = self.event_stream.ref
        return environment

    def _queue_target(self, target: str) -> sqs.Queue:
        if target == CRM_EVENTS_DLQ:
            return self.dead_letter_queues[target.split(".", 1)[0]]
        return self.queues[target]

    def _role(self, spec: FunctionSpec, log_group: logs.ILogGroup) -> iam.Role:
        role = iam.Role(
            self,
            f"{spec.logical_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"omnihub {self.config.name}: {spec.entry_module}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="Logs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(sid="Table", actions=list(TABLE_ACTIONS), resources=[self.table.table_arn])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TableIndexes", actions=list(INDEX_ACTIONS), resources=[f"{self.table.table_arn}/index/*"]
            )
        )
        for target in spec.sends_to:
            self._queue_target(target).grant_send_messages(role)
        if spec.event_log:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="EventHistory", actions=["firehose:PutRecord"], resources=[self.event_stream.attr_arn]
                )
            )
        if spec.secrets:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="SecretParameters",
                    actions=["ssm:GetParameter"],
                    resources=[
                        f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter"
                        f"{parameter_name(self.config.name, secret)}"
                        for secret in spec.secrets
                    ],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="SecretParametersKey",
                    actions=["kms:Decrypt"],
                    resources=[f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:key/*"],
                    conditions={"StringEquals": {"kms:ViaService": f"ssm.{Aws.REGION}.amazonaws.com"}},
                )
            )
        self.roles[spec.logical_id] = role
        return role

    def _log_group(self, spec: FunctionSpec, name: str | None = None) -> logs.LogGroup:
        days = self.config.log_retention_days
        if days not in _RETENTION:
            raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION)}")
        return logs.LogGroup(
            self,
            f"{spec.logical_id}Logs",
            log_group_name=name,
            retention=_RETENTION[days],
            removal_policy=RemovalPolicy.RETAIN if self.config.retain_data else RemovalPolicy.DESTROY,
        )

    # --- The Chalice API ----------------------------------------------------------------------

    def _api(self) -> None:
        from chalice.cdk import Chalice

        config = self.config
        log_group = self._log_group(API, name=f"/aws/lambda/{self.api_function_name}")
        role = self._role(API, log_group)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="XRay",
                actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                resources=["*"],  # X-Ray has no resource-level permissions
            )
        )
        source = packaging.stage_chalice_app(config.name, self.code_dir)
        environment = self._environment(API)
        with _chalice_workdir(source.parent):
            self.chalice = Chalice(
                self,
                "Api",
                source_dir=str(source),
                stage_config={
                    "manage_iam_role": False,
                    "iam_role_arn": role.role_arn,
                    "lambda_memory_size": config.api_memory_mb,
                    "lambda_timeout": API.timeout_seconds,
                    "lambda_architecture": config.architecture,
                    "xray": True,
                    "automatic_layer": False,
                    "layers": [layer.layer_version_arn for layer in self._layers(API)],
                    "environment_variables": environment,
                },
            )
        rest_api = self.chalice.get_resource("RestAPI")
        self.execute_api_url = Fn.sub(
            "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + self.api_stage,
            {"RestApi": rest_api.ref},
        )
        self.public_base_url = self._public_base_url(self.execute_api_url)

        handler = self.chalice.get_resource(API.logical_id)
        handler.add_property_override("FunctionName", self.api_function_name)
        handler.add_property_override("Runtime", self.runtime.name)
        handler.add_property_override("Environment.Variables.PUBLIC_BASE_URL", self.public_base_url)
        handler.node.add_dependency(log_group)

        sam = json.loads((Path(self.chalice._sam_package_dir) / "sam.json").read_text())
        definition = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
        self.api_paths: dict[str, list[str]] = {
            path: sorted(method.upper() for method in methods if not method.startswith("x-"))
            for path, methods in definition["paths"].items()
        }
        rest_api.add_property_override("DefinitionBody", self._api_definition(definition))
        rest_api.add_property_override("Name", self.api_name)
        rest_api.add_property_override("TracingEnabled", True)
        # Chalice's document is Swagger 2.0; saying so also stops SAM adding a stray "Stage" stage.
        rest_api.add_property_override("OpenApiVersion", definition.get("swagger", "2.0"))
        rest_api.add_property_override(
            "MethodSettings",
            [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": config.api_rate_limit,
                    "ThrottlingBurstLimit": config.api_burst_limit,
                }
            ],
        )

    def _api_definition(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Chalice's OpenAPI document, with two changes:

        - The integrations name the API function by its (fixed) name instead of `${APIHandler.Arn}`,
          so the REST API no longer depends on the function and the function can be given the API's
          own URL (PUBLIC_BASE_URL: Twilio signs the URL it calls) without a dependency cycle.
        - Gateway responses in the hub's error shape: an unknown route is a 404 (API Gateway's
          default is 403 "Missing Authentication Token"), other gateway errors keep their status.
        """
        function_arn = (
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + self.api_function_name
        )

        def rewrite(node: Any) -> Any:
            if isinstance(node, dict):
                return {key: rewrite(value) for key, value in node.items()}
            if isinstance(node, list):
                return [rewrite(value) for value in node]
            if isinstance(node, str) and "${APIHandler.Arn}" in node:
                return node.replace("${APIHandler.Arn}", function_arn)
            return node

        rewritten = rewrite(copy.deepcopy(definition))
        assert "APIHandler" not in json.dumps(rewritten), "the API definition still references the function"

        def error(code: str, message: str) -> str:
            return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))

        json_header = {"gatewayresponse.header.Content-Type": "'application/json'"}
        rewritten["x-amazon-apigateway-gateway-responses"] = {
            "MISSING_AUTHENTICATION_TOKEN": {
                "statusCode": 404,
                "responseParameters": json_header,
                "responseTemplates": {"application/json": error("not_found", NOT_FOUND_MESSAGE)},
            },
            "DEFAULT_4XX": {
                "responseParameters": json_header,
                "responseTemplates": {
                    "application/json": '{"error":{"code":"request_rejected","message":$context.error.messageString}}'
                },
            },
            "DEFAULT_5XX": {
                "responseParameters": json_header,
                "responseTemplates": {
                    "application/json": '{"error":{"code":"gateway_error","message":$context.error.messageString}}'
                },
            },
        }
        return rewritten

    # --- Workers ------------------------------------------------------------------------------

    def _worker(self, spec: FunctionSpec) -> None:
        assert spec.consumes is not None
        config = self.config
        log_group = self._log_group(spec)
        role = self._role(spec, log_group)
        environment = self._environment(spec)
        environment["PUBLIC_BASE_URL"] = self.public_base_url
        function = lambda_.Function(
            self,
            spec.logical_id,
            description=f"omnihub {config.name}: {spec.entry_module} ({spec.consumes.logical_id})",
            runtime=self.runtime,
            architecture=self.architecture,
            handler=spec.handler,
            code=self._asset(self.code_dir),
            layers=self._layers(spec),
            memory_size=config.worker_memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
            log_group=log_group,
            environment=environment,
        )
        self._fix_logical_id(function, spec.logical_id)
        function.add_event_source(
            event_sources.SqsEventSource(
                self.queues[spec.consumes.logical_id],
                batch_size=spec.batch_size,
                max_batching_window=(
                    Duration.seconds(spec.max_batching_window_seconds) if spec.max_batching_window_seconds else None
                ),
                max_concurrency=config.worker_max_concurrency,
                report_batch_item_failures=True,
            )
        )
        self.functions[spec.logical_id] = function

    # --- Alarms -------------------------------------------------------------------------------

    def _alarms(self) -> None:
        config = self.config
        self.alarm_topic = sns.Topic(self, "AlarmTopic", display_name=f"omnihub {config.name} alarms", enforce_ssl=True)
        subscription = sns.CfnSubscription(
            self,
            "AlarmEmailSubscription",
            topic_arn=self.alarm_topic.topic_arn,
            protocol="email",
            endpoint=self.alarm_email.value_as_string,
        )
        subscription.cfn_options.condition = self.has_alarm_email
        action = cloudwatch_actions.SnsAction(self.alarm_topic)
        five_minutes = Duration.minutes(5)

        def alarm(logical_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
            created = cloudwatch.Alarm(
                self,
                logical_id,
                alarm_name=f"{APP}-{config.name}-{logical_id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)

        for logical_id, dead_letters in self.dead_letter_queues.items():
            alarm(
                f"{logical_id}DlqNotEmpty",
                dead_letters.metric_approximate_number_of_messages_visible(period=five_minutes, statistic="Maximum"),
                0,
                f"Messages are waiting in the {logical_id} dead-letter queue: inspect them, fix the cause, redrive.",
            )
        for spec in WORKERS:
            function = self.functions[spec.logical_id]
            alarm(
                f"{spec.logical_id}Errors",
                function.metric_errors(period=five_minutes, statistic="Sum"),
                0,
                f"{spec.entry_module} failed invocations (not per-record failures, which SQS retries).",
            )
        api_throttles = cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name="Throttles",
            dimensions_map={"FunctionName": self.api_function_name},
            statistic="Sum",
            period=five_minutes,
        )
        for spec in (API, *WORKERS):
            alarm(
                f"{spec.logical_id}Throttles",
                (
                    api_throttles
                    if spec is API
                    else self.functions[spec.logical_id].metric_throttles(period=five_minutes, statistic="Sum")
                ),
                0,
                f"{spec.entry_module} invocations were throttled (account or function concurrency).",
            )
        alarm(
            "Api5xxRate",
            cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name="5XXError",
                dimensions_map={"ApiName": self.api_name, "Stage": self.api_stage},
                statistic="Average",
                period=five_minutes,
            ),
            config.api_5xx_rate_threshold,
            f"More than {config.api_5xx_rate_threshold:.0%} of API requests answered 5xx over 5 minutes.",
        )
        alarm(
            "EventHistoryDeliveryLate",
            cloudwatch.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions_map={"DeliveryStreamName": self.event_stream.ref},
                statistic="Maximum",
                period=five_minutes,
            ),
            3600,
            "The oldest event history record waiting in Firehose is over an hour old: it cannot write to its "
            "bucket (Firehose gives up after 24 hours).",
        )
        routing_queue = self.queues[ROUTING_QUEUE.logical_id]
        alarm(
            "RoutingQueueOldestMessageAge",
            routing_queue.metric_approximate_age_of_oldest_message(period=five_minutes, statistic="Maximum"),
            config.routing_age_threshold_seconds,
            f"A routing task has waited over {config.routing_age_threshold_seconds} s: is the routing worker failing?",
        )

    # --- Outputs ------------------------------------------------------------------------------

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.public_base_url, description="Base URL of the hub (PUBLIC_BASE_URL)")
        CfnOutput(self, "ExecuteApiUrl", value=self.execute_api_url, description="API Gateway URL of the stage")
        for path, methods in self.api_paths.items():
            if path.startswith("/webhooks/"):
                logical_id = "Webhook" + _camel(path.removeprefix("/webhooks/")) + "Url"
            elif path == "/webchat":
                logical_id = "WebchatUrl"
            else:
                continue
            CfnOutput(
                self,
                logical_id,
                value=self.public_base_url + path,
                description=f"{' '.join(methods)} {path}",
            )
        CfnOutput(self, "TableName", value=self.table.table_name)
        for logical_id, queue in self.queues.items():
            CfnOutput(self, f"{logical_id}Url", value=queue.queue_url)
            CfnOutput(self, f"{logical_id}DlqUrl", value=self.dead_letter_queues[logical_id].queue_url)
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn)
        CfnOutput(
            self,
            "EventHistoryBucketName",
            value=self.event_bucket.bucket_name,
            description=f"The event history's NDJSON files, under {EVENT_LOG.data_prefix}dt=YYYY-MM-DD/",
        )
        CfnOutput(self, "EventHistoryStreamName", value=self.event_stream.ref)
        CfnOutput(
            self,
            "EventHistoryAthenaTable",
            value=f"{self.event_database_name}.{EVENT_LOG.glue_table}",
            description="The Glue table Athena queries the event history through",
        )
        CfnOutput(
            self,
            "SecretParameterNames",
            value=" ".join(parameter_name(self.config.name, secret) for secret in SECRETS),
            description="SSM SecureString parameters the operator creates (aws ssm put-parameter --type SecureString)",
        )
