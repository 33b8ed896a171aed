"""The member accounts' spoke role: generated from the same declarations as the hub's policies."""

from __future__ import annotations

import json
from typing import Any

import parliament

from chalicelib import functions
from chalicelib.generate import permissions
from chalicelib.policy import reach
from tests.unit.test_permissions import STAGE_ENVS, _actions_of

HUB_ONLY = ("logs:", "dynamodb:", "sns:", "secretsmanager:", "s3:", "ssm:", "sts:", "lambda:")


def _template() -> dict[str, Any]:
    return permissions.spoke_template(STAGE_ENVS["deployed"], "prod")


def _policy(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["SpokeRole"]["Properties"]["Policies"][0]["PolicyDocument"]  # type: ignore[no-any-return]


def test_the_spoke_holds_the_playbooks_and_nothing_of_the_hub() -> None:
    policy = _policy(_template())
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    # ec2:capture-memory runs its document on the member's node: the one SSM call made there
    assert not [a for a in allowed if a.startswith(HUB_ONLY) and a != "ssm:SendCommand"]
    assert all("*" not in a for a in allowed)
    rules = permissions.stage_rules(STAGE_ENVS["deployed"])
    reached = [
        action for f in functions.FUNCTIONS if f.kind == "events" for action in reach.reachable_actions(f, rules)
    ]
    playbooks = {a for action in reached for s in (*action.iam, *action.release_iam) for a in s.actions}
    assert playbooks <= allowed
    denied = {a for s in policy["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    assert denied == {a for a in allowed if a in permissions.IAM_WRITES}  # every IAM write, denied on own/protected


def test_only_the_hubs_event_functions_with_the_external_id_may_assume_it() -> None:
    template = _template()
    (statement,) = template["Resources"]["SpokeRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    principals = [p["Fn::Sub"] for p in statement["Principal"]["AWS"]]
    assert principals == [f"arn:${{AWS::Partition}}:iam::${{HubAccountId}}:role/eks-responder-prod-{f.name}"
                          for f in functions.FUNCTIONS if f.kind == "events"]  # fmt: skip
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert "api_handler" not in json.dumps(principals)  # the Slack route never acts in a member account


def _resolved(value: Any) -> Any:
    """The policy as CloudFormation hands it to IAM in one member account."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return value["Fn::Sub"].replace("${AWS::AccountId}", "111122223333")
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    return value


def test_the_analyser_finds_only_what_is_inherent_to_a_responder() -> None:
    policy = json.dumps(_resolved(_policy(_template())))
    found = {
        (f.issue, _actions_of(f))
        for f in parliament.analyze_policy_string(policy, include_community_auditors=True).findings
    }
    assert {issue for issue, _ in found} <= {
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "CREDENTIALS_EXPOSURE",
        "RESOURCE_STAR",
        "RESOURCE_MISMATCH",  # ssm:SendCommand's instance statement (tests/unit/test_permissions.py)
    }, found


def test_other_regions_forward_exactly_what_the_hubs_functions_subscribe_to() -> None:
    import app

    template = permissions.forwarding_template()
    forwarded = [
        r["Properties"]["EventPattern"] for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"
    ]
    # every EventBridge pattern the deployed app subscribes to (flow-log objects included), in order
    subscribed = [getattr(s, "event_pattern", None) for s in app.app.event_sources]
    subscribed = [p for p in subscribed if p]
    assert forwarded == subscribed
    targets = [
        t
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
        for t in r["Properties"]["Targets"]
    ]
    assert {json.dumps(t["Arn"]) for t in targets} == {
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:events:${HubRegion}:${HubAccountId}:event-bus/default"})
    }


def test_each_account_reads_its_own_flow_log_bucket_and_only_that() -> None:
    env = {**STAGE_ENVS["deployed"], "FLOW_LOGS_BUCKET": "acme-flow-logs-{account}"}
    spoke = _policy(permissions.spoke_template(env, "prod"))
    reads = [s for s in spoke["Statement"] if s["Effect"] == "Allow" and "s3:GetObject" in s["Action"]]
    assert [(s["Action"], s["Resource"]) for s in reads] == [
        (["s3:GetObject"], [{"Fn::Sub": "arn:aws:s3:::acme-flow-logs-${AWS::AccountId}/*"}])
    ]
    # the hub reads its own bucket of that name with its own role, and no member's
    flow = functions.BY_NAME["on_flow_log_object"]
    hub = permissions.iam_policy(env, flow, "prod")
    resources = [r for s in hub["Statement"] if "s3:GetObject" in s["Action"] for r in s["Resource"]]
    assert [r for r in resources if "flow-logs" in r] == ["arn:aws:s3:::acme-flow-logs-111122223333/*"]
