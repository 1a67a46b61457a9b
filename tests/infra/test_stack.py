"""The synthesised stacks (dev and prod) hold what the hub needs, and no more than it needs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.definitions import QUEUES, TABLE
from infra.functions import (
    ALL_FUNCTIONS,
    API,
    CRM_EVENTS_DLQ,
    SECRETS,
    WORKERS,
    FunctionSpec,
    check_visibility_timeouts,
    parameter_name,
)
from infra.stages import STAGES
from tests.infra import codemap
from tests.infra.conftest import STAGES as SYNTHESISED
from tests.infra.template_tools import (
    all_iam_statements,
    environment,
    function_role,
    listify,
    properties,
    referenced_ids,
    render,
    resource_strings,
    resources,
    resources_granted,
    role_statements,
)

STAGE_NAMES = list(SYNTHESISED)
# The only actions AWS offers no resource-level permission for, among those the hub needs.
WILDCARD_ALLOWED_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
WEBHOOK_URLS = {
    "/webhooks/twilio/messaging": {"POST"},
    "/webhooks/twilio/status": {"POST"},
    "/webhooks/sendgrid/inbound": {"POST"},
    "/webhooks/meta": {"GET", "POST"},
    "/webhooks/telegram": {"POST"},
    "/webhooks/line": {"POST"},
    "/webhooks/wechat": {"GET", "POST"},
    "/webchat": {"GET"},
}


@pytest.fixture(params=STAGE_NAMES)
def stage(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def template(synthesis: Any, stage: str) -> dict[str, Any]:
    return synthesis.templates[stage]


def _queue_ids() -> dict[str, str]:
    """Target name used in infra/functions.py -> queue logical id in the template."""
    ids = {queue.logical_id: queue.logical_id for queue in QUEUES}
    ids[CRM_EVENTS_DLQ] = "CrmEventsQueueDlq"
    return ids


def _function_ids(template: dict[str, Any]) -> dict[str, str]:
    """Every Lambda function in the template (plain and SAM) -> its handler."""
    found = {}
    for kind in ("AWS::Lambda::Function", "AWS::Serverless::Function"):
        for logical_id, resource in resources(template, kind).items():
            found[logical_id] = resource["Properties"]["Handler"]
    return found


# --- Synthesis --------------------------------------------------------------------------------


def test_synthesis_is_quick_enough_for_the_test_suite(synthesis: Any) -> None:
    # Both stages in one process; a first run also builds the layers (see conftest).
    print(f"synthesis of {', '.join(STAGE_NAMES)}: {synthesis.seconds:.1f} s")
    assert synthesis.seconds < 900


def test_the_stack_holds_exactly_the_functions_infra_declares(template: dict[str, Any]) -> None:
    assert _function_ids(template) == {spec.logical_id: spec.handler for spec in ALL_FUNCTIONS}


def test_assertions_library_reads_the_templates(templates: dict[str, Any], stage: str) -> None:
    templates[stage].resource_count_is("AWS::DynamoDB::Table", 1)
    templates[stage].resource_count_is("AWS::SQS::Queue", 2 * len(QUEUES))
    templates[stage].resource_count_is("AWS::Lambda::EventSourceMapping", len(WORKERS))


# --- Table ------------------------------------------------------------------------------------


def test_table_is_on_demand_encrypted_with_point_in_time_recovery(templates: dict[str, Any], stage: str) -> None:
    from aws_cdk.assertions import Match

    templates[stage].has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": TABLE.ttl_attribute, "Enabled": True},
            "KeySchema": [
                {"AttributeName": TABLE.partition_key, "KeyType": "HASH"},
                {"AttributeName": TABLE.sort_key, "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": Match.array_with(
                [Match.object_like({"IndexName": index.name}) for index in TABLE.indexes]
            ),
        },
    )


def test_table_matches_the_local_definition(template: dict[str, Any]) -> None:
    """What `make run` creates (infra/definitions.py) is what deploys: keys, attributes, indexes."""
    table = properties(template, TABLE.logical_id)
    local = TABLE.create_table_kwargs()
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == local["AttributeDefinitions"]
    assert table["KeySchema"] == local["KeySchema"]
    assert [
        {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        for index in table["GlobalSecondaryIndexes"]
    ] == local["GlobalSecondaryIndexes"]


def test_prod_table_is_retained_and_protected_from_deletion(synthesis: Any) -> None:
    prod = synthesis.templates["prod"]["Resources"][TABLE.logical_id]
    assert prod["DeletionPolicy"] == "Retain"
    assert prod["UpdateReplacePolicy"] == "Retain"
    assert prod["Properties"]["DeletionProtectionEnabled"] is True
    dev = synthesis.templates["dev"]["Resources"][TABLE.logical_id]
    assert dev["DeletionPolicy"] == "Delete"
    assert dev["Properties"]["DeletionProtectionEnabled"] is False


# --- Queues -----------------------------------------------------------------------------------


def test_every_queue_has_a_dead_letter_queue_with_redrive(template: dict[str, Any]) -> None:
    for definition in QUEUES:
        queue = properties(template, definition.logical_id)
        dead_letters_id = f"{definition.logical_id}Dlq"
        dead_letters = properties(template, dead_letters_id)
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dead_letters_id, "Arn"]},
            "maxReceiveCount": definition.max_receive_count,
        }
        assert queue["VisibilityTimeout"] == definition.visibility_timeout_seconds
        assert bool(queue.get("FifoQueue")) is definition.fifo
        assert bool(dead_letters.get("FifoQueue")) is definition.fifo, "a FIFO queue needs a FIFO dead-letter queue"
        assert dead_letters["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert "RedrivePolicy" not in dead_letters


def test_every_queue_is_encrypted_and_refuses_plain_http(template: dict[str, Any]) -> None:
    policies = resources(template, "AWS::SQS::QueuePolicy").values()
    for logical_id, queue in resources(template, "AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, logical_id
        denies_http = [
            statement
            for policy in policies
            if {"Ref": logical_id} in policy["Properties"]["Queues"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny"
            and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies_http, f"{logical_id} accepts requests without TLS"


def test_event_sources_report_partial_batch_failures(template: dict[str, Any]) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    by_function = {mapping["Properties"]["FunctionName"]["Ref"]: mapping["Properties"] for mapping in mappings}
    assert set(by_function) == {spec.logical_id for spec in WORKERS}
    for spec in WORKERS:
        assert spec.consumes is not None
        mapping = by_function[spec.logical_id]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [spec.consumes.logical_id, "Arn"]}
        assert mapping["BatchSize"] == spec.batch_size
        if spec.consumes.fifo:
            assert mapping["BatchSize"] <= 10
            assert "MaximumBatchingWindowInSeconds" not in mapping


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(template: dict[str, Any]) -> None:
    for mapping in resources(template, "AWS::Lambda::EventSourceMapping").values():
        queue_id = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        function_id = mapping["Properties"]["FunctionName"]["Ref"]
        visibility = properties(template, queue_id)["VisibilityTimeout"]
        timeout = properties(template, function_id)["Timeout"]
        assert visibility >= 6 * timeout, f"{queue_id} ({visibility} s) vs {function_id} ({timeout} s)"


def test_synthesis_refuses_a_consumer_timeout_the_queue_cannot_cover() -> None:
    from dataclasses import replace

    too_slow = replace(WORKERS[0], timeout_seconds=WORKERS[0].consumes.visibility_timeout_seconds // 6 + 1)
    with pytest.raises(ValueError, match="less than 6 x"):
        check_visibility_timeouts((too_slow,))


# --- IAM --------------------------------------------------------------------------------------


def test_no_statement_grants_everything(template: dict[str, Any]) -> None:
    for statement in all_iam_statements(template):
        actions = listify(statement["Action"])
        assert all(action != "*" and not action.endswith(":*") for action in actions), statement
        if "*" in listify(statement["Resource"]):
            assert set(actions) <= WILDCARD_ALLOWED_ACTIONS, f"Resource '*' for {actions}"
        assert "NotAction" not in statement and "NotResource" not in statement


def test_roles_have_no_managed_policies(template: dict[str, Any]) -> None:
    # AWSLambdaBasicExecutionRole would grant logs on "*"; each role writes its own log group.
    for logical_id, role in resources(template, "AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), logical_id


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_each_function_touches_only_its_own_resources(template: dict[str, Any], spec: FunctionSpec) -> None:
    role = function_role(template, spec.logical_id)
    queue_ids = _queue_ids()
    all_queues = set(resources(template, "AWS::SQS::Queue"))

    sends = resources_granted(template, role, "sqs:SendMessage")
    assert sends == {queue_ids[target] for target in spec.sends_to}
    receives = resources_granted(template, role, "sqs:ReceiveMessage")
    assert receives == ({spec.consumes.logical_id} if spec.consumes else set())
    # nothing else on any queue (purge, delete, attributes of others...)
    for statement in [s for s in _statements(template, role) if referenced_ids(s["Resource"]) & all_queues]:
        assert set(listify(statement["Action"])) <= {
            "sqs:SendMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "sqs:ReceiveMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
        }

    table_arn, index_arns = f"${{{TABLE.logical_id}.Arn}}", f"${{{TABLE.logical_id}.Arn}}/index/*"
    on_table: set[str] = set()
    on_indexes: set[str] = set()
    for statement in _statements(template, role):
        for resource in map(render, listify(statement["Resource"])):
            if resource == table_arn:
                on_table |= set(listify(statement["Action"]))
            elif resource == index_arns:
                on_indexes |= set(listify(statement["Action"]))
            else:
                assert TABLE.logical_id not in resource, resource
    assert on_table == codemap.dynamodb_actions(), "table grants differ from what chalicelib/store calls"
    assert on_indexes == {"dynamodb:Query"}
    assert "dynamodb:Scan" not in on_table, "hot paths never scan"

    stage = _stage_of(template)
    parameters = resource_strings(template, role, "ssm:GetParameter")
    assert sorted(parameters) == sorted(
        f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{parameter_name(stage, name)}"
        for name in spec.secrets
    )
    decrypt = [s for s in _statements(template, role) if "kms:Decrypt" in listify(s["Action"])]
    if spec.secrets:
        assert len(decrypt) == 1
        assert render(decrypt[0]["Condition"]["StringEquals"]["kms:ViaService"]) == "ssm.${AWS::Region}.amazonaws.com"
    else:
        assert decrypt == []

    logs = resources_granted(template, role, "logs:PutLogEvents")
    assert len(logs) == 1 and template["Resources"][logs.pop()]["Type"] == "AWS::Logs::LogGroup"


def test_crm_events_worker_cannot_reach_routing_timers_or_secrets(template: dict[str, Any]) -> None:
    role = function_role(template, "CrmEventsWorker")
    sends = resources_granted(template, role, "sqs:SendMessage")
    assert "RoutingQueue" not in sends and "TimerQueue" not in sends
    assert resource_strings(template, role, "ssm:GetParameter") == []


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    from tests.infra.template_tools import role_statements

    return role_statements(template, role)


def _stage_of(template: dict[str, Any]) -> str:
    tags = properties(template, TABLE.logical_id)["Tags"]
    return next(tag["Value"] for tag in tags if tag["Key"] == "stage")


# --- Functions --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_providers_layer_only_on_functions_that_send(template: dict[str, Any], spec: FunctionSpec) -> None:
    layers = [layer["Ref"] for layer in properties(template, spec.logical_id)["Layers"]]
    providers = [layer for layer in layers if layer.startswith("ProvidersLayer")]
    core = [layer for layer in layers if layer.startswith("CoreLayer")]
    assert len(core) == 1
    assert bool(providers) is spec.providers
    assert len(layers) == len(core) + len(providers)


def test_crm_events_worker_has_no_provider_sdks(template: dict[str, Any]) -> None:
    layers = [layer["Ref"] for layer in properties(template, "CrmEventsWorker")["Layers"]]
    assert not [layer for layer in layers if layer.startswith("ProvidersLayer")]


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_functions_run_python_312_traced_with_powertools_settings(template: dict[str, Any], spec: FunctionSpec) -> None:
    function = properties(template, spec.logical_id)
    stage = STAGES[_stage_of(template)]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == [stage.architecture]
    tracing = function.get("TracingConfig", {}).get("Mode") or function.get("Tracing")
    assert tracing == "Active"
    assert function["Timeout"] == spec.timeout_seconds
    assert function["MemorySize"] == (stage.api_memory_mb if spec is API else stage.worker_memory_mb)
    variables = environment(template, spec.logical_id)
    assert variables["POWERTOOLS_SERVICE_NAME"] == "omnihub"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Omnihub"
    assert variables[TABLE.name_env] == {"Ref": TABLE.logical_id}
    assert "PUBLIC_BASE_URL" in variables


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_environment_names_exactly_the_queues_and_secrets_granted(template: dict[str, Any], spec: FunctionSpec) -> None:
    variables = environment(template, spec.logical_id)
    queue_urls = {name: value["Ref"] for name, value in variables.items() if name.endswith("_QUEUE_URL")}
    queue_urls |= {name: value["Ref"] for name, value in variables.items() if name.endswith("_DLQ_URL")}
    assert set(queue_urls.values()) == {_queue_ids()[target] for target in spec.sends_to}
    secret_names = {name.removesuffix("_PARAMETER").lower() for name in variables if name.endswith("_PARAMETER")}
    assert secret_names == set(spec.secrets)


_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|API_KEY|PRIVATE)", re.IGNORECASE)
_SECRET_SHAPE = re.compile(r"^(?!/)(?!https?://)[A-Za-z0-9+/=_\-.]{20,}$")


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_no_environment_variable_holds_a_secret(template: dict[str, Any], spec: FunctionSpec) -> None:
    stage = _stage_of(template)
    for name, value in environment(template, spec.logical_id).items():
        if _SECRET_NAME.search(name):
            assert name.endswith("_PARAMETER"), f"{name}: secrets go in SSM, named by <NAME>_PARAMETER"
            assert value == parameter_name(stage, name.removesuffix("_PARAMETER").lower())
        if isinstance(value, str):
            assert not _SECRET_SHAPE.match(value), f"{name}={value!r} looks like a credential"


def test_no_template_parameter_or_output_carries_a_secret_value(template: dict[str, Any]) -> None:
    for name, parameter in template.get("Parameters", {}).items():
        if name.startswith("BootstrapVersion"):
            continue
        assert parameter.get("Default", "") == "", f"{name} has a default value"
    text = json.dumps(template)
    for secret in SECRETS:
        assert f'"{secret.upper()}"' not in text, f"{secret.upper()} must be read from SSM, not set"


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_each_function_logs_to_its_own_group_with_the_stage_retention(
    template: dict[str, Any], spec: FunctionSpec
) -> None:
    stage = STAGES[_stage_of(template)]
    role = function_role(template, spec.logical_id)
    (group_id,) = resources_granted(template, role, "logs:PutLogEvents")
    group = template["Resources"][group_id]
    assert group["Properties"]["RetentionInDays"] == stage.log_retention_days
    assert group["DeletionPolicy"] == ("Retain" if stage.retain_data else "Delete")
    function = properties(template, spec.logical_id)
    if spec is API:
        # the API function's log group is named the way Lambda names it
        assert group["Properties"]["LogGroupName"] == f"/aws/lambda/{function['FunctionName']}"
    else:
        assert function["LoggingConfig"]["LogGroup"] == {"Ref": group_id}


def test_stages_differ_as_configured(synthesis: Any) -> None:
    dev, prod = (synthesis.templates[name] for name in ("dev", "prod"))
    assert properties(prod, "APIHandler")["MemorySize"] > properties(dev, "APIHandler")["MemorySize"]
    assert _throttling(prod)["ThrottlingRateLimit"] > _throttling(dev)["ThrottlingRateLimit"]


# --- API Gateway ------------------------------------------------------------------------------


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    return properties(template, "RestAPI")["DefinitionBody"]


def _throttling(template: dict[str, Any]) -> dict[str, Any]:
    (settings,) = properties(template, "RestAPI")["MethodSettings"]
    return settings


def test_unknown_routes_answer_404_in_the_hubs_error_shape(template: dict[str, Any]) -> None:
    responses = _definition(template)["x-amazon-apigateway-gateway-responses"]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["statusCode"] == 404
    assert missing["responseParameters"]["gatewayresponse.header.Content-Type"] == "'application/json'"
    body = json.loads(missing["responseTemplates"]["application/json"])
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        assert '"error":{"code":' in responses[kind]["responseTemplates"]["application/json"]


def test_api_is_traced_and_throttled_per_stage(template: dict[str, Any]) -> None:
    stage = STAGES[_stage_of(template)]
    api = properties(template, "RestAPI")
    assert api["TracingEnabled"] is True
    assert api["StageName"] == "api" and api["OpenApiVersion"] == "2.0"  # no stray SAM "Stage" stage
    assert _throttling(template) == {
        "ResourcePath": "/*",
        "HttpMethod": "*",
        "ThrottlingRateLimit": stage.api_rate_limit,
        "ThrottlingBurstLimit": stage.api_burst_limit,
    }


def test_api_definition_names_the_function_without_depending_on_it(template: dict[str, Any]) -> None:
    """The API function is given the API's own URL (PUBLIC_BASE_URL); the API must therefore not
    reference the function, or CloudFormation would see a cycle."""
    definition = json.dumps(_definition(template))
    assert "APIHandler" not in definition
    name = properties(template, "APIHandler")["FunctionName"]
    uris = re.findall(r'"uri": \{"Fn::Sub": "([^"]+)"\}', definition)
    assert uris and all(uri.endswith(f":function:{name}/invocations") for uri in uris)
    assert "RestAPI" in referenced_ids(environment(template, "APIHandler")["PUBLIC_BASE_URL"])
    permission = next(iter(resources(template, "AWS::Lambda::Permission").values()))["Properties"]
    assert permission["FunctionName"] == {"Ref": "APIHandler"}


def test_api_function_uses_the_layers_not_a_bundled_copy(template: dict[str, Any]) -> None:
    function = properties(template, "APIHandler")
    assert function["Handler"] == "app.app"
    assert [layer["Ref"][:-8] for layer in function["Layers"]] == ["CoreLayer", "ProvidersLayer"]


# --- Alarms -----------------------------------------------------------------------------------


def _alarms(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in resources(template, "AWS::CloudWatch::Alarm").values()]


def _alarm_on(template: dict[str, Any], metric: str, dimension: str, value: Any) -> dict[str, Any]:
    matches = [
        alarm
        for alarm in _alarms(template)
        if alarm.get("MetricName") == metric
        and any(d["Name"] == dimension and d["Value"] == value for d in alarm.get("Dimensions", []))
    ]
    assert len(matches) == 1, f"{len(matches)} alarms on {metric} {dimension}={value}"
    return matches[0]


def test_every_dead_letter_queue_has_an_alarm(template: dict[str, Any]) -> None:
    for definition in QUEUES:
        alarm = _alarm_on(
            template,
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            {"Fn::GetAtt": [f"{definition.logical_id}Dlq", "QueueName"]},
        )
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_every_worker_has_error_and_throttle_alarms(template: dict[str, Any]) -> None:
    for spec in WORKERS:
        for metric in ("Errors", "Throttles"):
            alarm = _alarm_on(template, metric, "FunctionName", {"Ref": spec.logical_id})
            assert alarm["Threshold"] == 0 and alarm["Statistic"] == "Sum"
    api_name = properties(template, "APIHandler")["FunctionName"]
    _alarm_on(template, "Throttles", "FunctionName", api_name)


def test_api_5xx_rate_and_routing_backlog_alarms(template: dict[str, Any]) -> None:
    stage = STAGES[_stage_of(template)]
    api_name = properties(template, "RestAPI")["Name"]
    errors = _alarm_on(template, "5XXError", "ApiName", api_name)
    assert errors["Statistic"] == "Average" and errors["Threshold"] == stage.api_5xx_rate_threshold
    age = _alarm_on(
        template, "ApproximateAgeOfOldestMessage", "QueueName", {"Fn::GetAtt": ["RoutingQueue", "QueueName"]}
    )
    assert age["Threshold"] == stage.routing_age_threshold_seconds


def test_alarms_notify_the_topic_and_ignore_missing_data(template: dict[str, Any]) -> None:
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    for alarm in _alarms(template):
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Condition"] == "HasAlarmEmail"


# --- Outputs ----------------------------------------------------------------------------------


def _output_paths(template: dict[str, Any]) -> dict[str, str]:
    """Output value -> rendered text, for outputs built as <base URL> + path."""
    return {name: render(output["Value"]) for name, output in template["Outputs"].items()}


def test_outputs_include_every_webhook_url(template: dict[str, Any]) -> None:
    rendered = _output_paths(template)
    routes = {path for path in _definition(template)["paths"] if path.startswith("/webhooks/")}
    assert routes <= set(WEBHOOK_URLS), f"new webhook routes: add them to WEBHOOK_URLS: {routes - set(WEBHOOK_URLS)}"
    for path, methods in WEBHOOK_URLS.items():
        assert set(_definition(template)["paths"][path]) >= {method.lower() for method in methods}
        matching = [name for name, text in rendered.items() if text.endswith(path)]
        assert len(matching) == 1, f"no output for {path}"
        output = template["Outputs"][matching[0]]
        assert "ApiUrl" not in matching[0]
        assert set(output["Description"].split(" ", len(methods))[: len(methods)]) == methods
        # <public base URL> + path, the base being the custom domain when one is set
        assert "HasPublicBaseUrl" in json.dumps(output["Value"])


def test_outputs_name_the_table_queues_and_alarm_topic(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["TableName"]["Value"] == {"Ref": TABLE.logical_id}
    for definition in QUEUES:
        assert outputs[f"{definition.logical_id}Url"]["Value"] == {"Ref": definition.logical_id}
        assert outputs[f"{definition.logical_id}DlqUrl"]["Value"] == {"Ref": f"{definition.logical_id}Dlq"}
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": topic_id}
    assert "ApiUrl" in outputs


def test_outputs_list_the_ssm_parameters_to_create(template: dict[str, Any]) -> None:
    stage = _stage_of(template)
    names = template["Outputs"]["SecretParameterNames"]["Value"].split()
    assert names == [parameter_name(stage, secret) for secret in SECRETS]


def test_queues_are_named_by_stage_so_the_dlq_tool_finds_them(synthesis: Any) -> None:
    for stage, template in synthesis.templates.items():
        names = {
            resource["Properties"].get("QueueName")
            for resource in template["Resources"].values()
            if resource["Type"] == "AWS::SQS::Queue"
        }
        expected = {f"{stage}-{q.name}" for q in QUEUES} | {f"{stage}-{q.dead_letter_name}" for q in QUEUES}
        assert names == expected


# --- Event history (Firehose -> S3 -> Glue/Athena) ------------------------------------------------


def _event_bucket_id(template: dict[str, Any]) -> str:
    [bucket_id] = resources(template, "AWS::S3::Bucket")
    return bucket_id


def test_the_event_history_bucket_is_private_encrypted_tls_only_and_expires_by_stage(
    template: dict[str, Any],
) -> None:
    bucket_id = _event_bucket_id(template)
    bucket = template["Resources"][bucket_id]
    props = bucket["Properties"]
    [encryption] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["DeletionPolicy"] == "Retain", "history outlives the stack"
    config = STAGES[_stage_of(template)]
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == config.event_history_expire_days
    transitions = [(t["StorageClass"], t["TransitionInDays"]) for t in rule.get("Transitions", [])]
    days = config.event_history_infrequent_access_days
    assert transitions == ([("STANDARD_IA", days)] if days else [])
    [policy] = [
        p
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    [deny] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_lifecycle_differs_by_stage() -> None:
    dev, prod = STAGES["dev"], STAGES["prod"]
    assert dev.event_history_expire_days < prod.event_history_expire_days
    assert prod.event_history_infrequent_access_days is not None
    assert prod.event_history_infrequent_access_days < prod.event_history_expire_days


def test_firehose_writes_date_partitions_as_the_local_stack_does(template: dict[str, Any]) -> None:
    from infra.definitions import EVENT_LOG

    stream = properties(template, EVENT_LOG.logical_id)
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "AWS_OWNED_CMK"
    destination = stream["ExtendedS3DestinationConfiguration"]
    local = EVENT_LOG.create_stream_kwargs("s", "b", "r")["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == local["Prefix"] == "events/dt=!{timestamp:yyyy-MM-dd}/"
    assert destination["ErrorOutputPrefix"] == local["ErrorOutputPrefix"]
    assert "!{firehose:error-output-type}" in destination["ErrorOutputPrefix"], "Firehose requires it"
    assert destination["CompressionFormat"] == local["CompressionFormat"] == "GZIP"
    assert destination["BufferingHints"] == local["BufferingHints"]
    assert referenced_ids(destination["BucketARN"]) == {_event_bucket_id(template)}


def test_only_firehose_may_write_the_history_and_only_there(template: dict[str, Any]) -> None:
    from infra.definitions import EVENT_LOG

    bucket_id = _event_bucket_id(template)
    destination = properties(template, EVENT_LOG.logical_id)["ExtendedS3DestinationConfiguration"]
    [role_id] = referenced_ids(destination["RoleARN"])
    trust = properties(template, role_id)["AssumeRolePolicyDocument"]["Statement"]
    assert [statement["Principal"] for statement in trust] == [{"Service": "firehose.amazonaws.com"}]
    assert render(trust[0]["Condition"]["StringEquals"]["sts:ExternalId"]) == "${AWS::AccountId}"
    bucket_arn = f"${{{bucket_id}.Arn}}"
    granted: dict[str, set[str]] = {}
    for statement in role_statements(template, role_id):
        for action in listify(statement["Action"]):
            granted.setdefault(action, set()).update(render(r) for r in listify(statement["Resource"]))
    objects = {f"{bucket_arn}/events/*", f"{bucket_arn}/errors/*"}
    assert granted == {
        "s3:PutObject": objects,
        "s3:GetObject": objects,
        "s3:AbortMultipartUpload": objects,
        "s3:GetBucketLocation": {bucket_arn},
        "s3:ListBucket": {bucket_arn},
        "s3:ListBucketMultipartUploads": {bucket_arn},
    }
    for other_role in resources(template, "AWS::IAM::Role"):
        if other_role != role_id:
            assert not any(
                bucket_id in referenced_ids(statement["Resource"])
                for statement in role_statements(template, other_role)
            ), f"{other_role} reaches the history bucket"


def test_the_glue_table_projects_dates_onto_the_firehose_paths(template: dict[str, Any]) -> None:
    from infra.definitions import EVENT_LOG

    stage = _stage_of(template)
    [database] = resources(template, "AWS::Glue::Database").values()
    assert database["Properties"]["DatabaseInput"]["Name"] == f"omnihub_{stage}"
    [table] = resources(template, "AWS::Glue::Table").values()
    assert table["Properties"]["DatabaseName"] == f"omnihub_{stage}"
    table_input = table["Properties"]["TableInput"]
    assert table_input["Name"] == "events" and table_input["TableType"] == "EXTERNAL_TABLE"
    parameters = table_input["Parameters"]
    assert {key: value for key, value in parameters.items() if key.startswith("projection.")} == {
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": f"{EVENT_LOG.projection_start},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
    }
    bucket = f"${{{_event_bucket_id(template)}}}"
    assert render(parameters["storage.location.template"]) == f"s3://{bucket}/events/dt=${{dt}}/"
    # the projection's path is the Firehose prefix with its date expression as ${dt}
    assert EVENT_LOG.prefix.replace("!{timestamp:yyyy-MM-dd}", "${dt}") == "events/dt=${dt}/"
    assert table_input["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    descriptor = table_input["StorageDescriptor"]
    assert render(descriptor["Location"]) == f"s3://{bucket}/events/"
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert [(column["Name"], column["Type"]) for column in descriptor["Columns"]] == [
        ("id", "string"),
        ("type", "string"),
        ("timestamp", "string"),
        ("data", "string"),
    ]


def test_the_history_outputs_and_its_delivery_alarm(template: dict[str, Any]) -> None:
    from infra.definitions import EVENT_LOG

    outputs = template["Outputs"]
    assert outputs["EventHistoryBucketName"]["Value"] == {"Ref": _event_bucket_id(template)}
    assert outputs["EventHistoryStreamName"]["Value"] == {"Ref": EVENT_LOG.logical_id}
    assert outputs["EventHistoryAthenaTable"]["Value"] == f"omnihub_{_stage_of(template)}.events"
    alarm = _alarm_on(template, "DeliveryToS3.DataFreshness", "DeliveryStreamName", {"Ref": EVENT_LOG.logical_id})
    assert alarm["Namespace"] == "AWS/Firehose" and alarm["Threshold"] == 3600


@pytest.mark.parametrize("spec", ALL_FUNCTIONS, ids=lambda spec: spec.logical_id)
def test_only_the_crm_events_worker_may_put_to_the_history_stream(template: dict[str, Any], spec: FunctionSpec) -> None:
    from infra.definitions import EVENT_LOG

    role_id = function_role(template, spec.logical_id)
    firehose_actions = {
        action
        for statement in role_statements(template, role_id)
        for action in listify(statement["Action"])
        if action.startswith("firehose:")
    }
    assert firehose_actions == ({"firehose:PutRecord"} if spec.event_log else set())
    granted = resources_granted(template, role_id, "firehose:PutRecord")
    assert granted == ({EVENT_LOG.logical_id} if spec.event_log else set())
    variables = environment(template, spec.logical_id)
    assert variables.get(EVENT_LOG.stream_env) == ({"Ref": EVENT_LOG.logical_id} if spec.event_log else None)
    # the grant follows the code: exactly the functions whose code reaches the exporter
    assert spec.event_log is ("chalicelib.services.event_log" in codemap.closure(spec.entry_module))
