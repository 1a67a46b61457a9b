"""Small readers over a synthesised CloudFormation template (a dict)."""

from __future__ import annotations

import json
from typing import Any

Template = dict[str, Any]


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def properties(template: Template, logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id].get("Properties", {})


def listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_role(template: Template, function_id: str) -> str:
    role = properties(template, function_id)["Role"]
    return role["Fn::GetAtt"][0]


def role_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every IAM statement granted to a role: its inline policies and the AWS::IAM::Policy
    resources attached to it."""
    statements: list[dict[str, Any]] = []
    for policy in properties(template, role_id).get("Policies", []):
        statements += listify(policy["PolicyDocument"]["Statement"])
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += listify(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def all_iam_statements(template: Template) -> list[dict[str, Any]]:
    statements = []
    for role_id in resources(template, "AWS::IAM::Role"):
        statements += role_statements(template, role_id)
    return statements


def referenced_ids(value: Any) -> set[str]:
    """Logical ids a value refers to through Ref / Fn::GetAtt."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_ids(item)
    return found


def resources_granted(template: Template, role_id: str, action: str) -> set[str]:
    """Logical ids of the resources a role may perform `action` on."""
    granted: set[str] = set()
    for statement in role_statements(template, role_id):
        if statement.get("Effect", "Allow") == "Allow" and action in listify(statement["Action"]):
            granted |= referenced_ids(statement["Resource"])
    return granted


def resource_strings(template: Template, role_id: str, action: str) -> list[str]:
    """The resources a role may perform `action` on, rendered as text (for ARNs built with Join)."""
    rendered = []
    for statement in role_statements(template, role_id):
        if statement.get("Effect", "Allow") == "Allow" and action in listify(statement["Action"]):
            rendered += [render(resource) for resource in listify(statement["Resource"])]
    return rendered


def render(value: Any) -> str:
    """A CloudFormation string value as text: literal parts kept, pseudo parameters and references
    written ${Name}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    return json.dumps(value, sort_keys=True)


def environment(template: Template, function_id: str) -> dict[str, Any]:
    return properties(template, function_id).get("Environment", {}).get("Variables", {})
