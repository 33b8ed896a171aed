"""Proof that each function's generated policy allows what its code does, and nothing it must not.

moto enforces actions only (a resource-scoped Allow never matches there), so the proof is made
here: every AWS call the integration suite recorded per function (iam_calls) becomes the IAM
authorisations AWS would check — action, resource ARN (in the formats policy_sentry documents
for that action) and condition keys (tags read when the call was made, `ec2:CreateAction` for
tags set on creation) — and principalmapper's local policy simulation evaluates them against the
function's generated policy, Deny first. This module runs after every other integration test.
"""

from __future__ import annotations

import collections
import collections.abc
import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from chalicelib import functions
from chalicelib.generate import permissions
from chalicelib.policy import reach
from tests.integration.iam_calls import RECORDED, Call
from tests.integration.outputs import OUTPUTS_ENV

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"  # moto's
HUB_ACCOUNT = ACCOUNT
# The stage the integration suite runs as: the resources its tests name.
PROOF_ENV = {
    "STAGE": "test",
    "INCIDENTS_TABLE": "eks-responder-incidents",
    "SNS_TOPIC_ARN": f"arn:aws:sns:us-east-1:{ACCOUNT}:incidents",
    "SLACK_WEBHOOK_SECRET": "eks-responder/slack",
    "EVIDENCE_BUCKET": "eks-responder-evidence-demo",
    "FLOW_LOGS_BUCKET": "flow-logs",
    "THREAT_LIST": "s3://flow-logs/threats.txt",
    # tests/integration/test_accounts.py: listed members, and an organizational unit (read at run time)
    "MANAGED_ACCOUNTS": "111111111111,222222222222,333333333333,ou-abcd-12345678",
    # tests/integration/test_every_output.py: every other output (tests/integration/outputs.py names them)
    **OUTPUTS_ENV,
}
NO_AUTHORISATION = {("sts", "GetCallerIdentity")}  # every principal may call it
IAM_NAMES = {("s3", "HeadObject"): "s3:GetObject", ("s3", "ListObjectsV2"): "s3:ListBucket"}


@cache
def _simulation() -> Any:
    # principalmapper 1.1.5 still imports two ABCs from `collections` (moved in Python 3.10):
    # point them at collections.abc before importing it; nothing else of it is changed.
    for name in ("Mapping", "MutableMapping"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from principalmapper.querying import local_policy_simulation
    from principalmapper.util.case_insensitive_dict import CaseInsensitiveDict

    return local_policy_simulation, CaseInsensitiveDict


@dataclass(frozen=True)
class Authorisation:
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict, hash=False)


def evaluate(policy: dict[str, Any], check: Authorisation) -> str:
    """The verdict: "denied" (an explicit Deny matches), "allowed" (an Allow matches) or "implicit deny"."""
    given = tuple(sorted(check.context.items()))
    return _evaluate(json.dumps(policy, sort_keys=True), check.action, check.resource, given)


@cache
def _evaluate(document: str, action: str, resource: str, given: tuple[tuple[str, str], ...]) -> str:
    policy = json.loads(document)
    simulation, case_insensitive = _simulation()
    context = case_insensitive({"aws:PrincipalAccount": ACCOUNT, **dict(given)})
    if simulation.policy_has_matching_statement(policy, "Deny", action, resource, context):
        return "denied"
    if simulation.policy_has_matching_statement(policy, "Allow", action, resource, context):
        return "allowed"
    return "implicit deny"


@cache
def _formats(action: str) -> tuple[str, ...]:
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":")
    return tuple(e["resource_arn_format"] for e in get_action_data(service, name).get(service, []))


def _repositories(call: Call) -> list[str]:
    named = [call.params.get("repositoryName"), *call.params.get("repositoryNames", [])]
    if call.operation == "DescribeRepositories" and not call.params.get("repositoryNames"):
        named.append("*")  # listing a registry is authorised on every repository of it
    return [n for n in named if n]


def _ids(call: Call) -> dict[str, list[str]]:
    """Resource ids a call names, by the resource type of its ARN."""
    p = call.params
    found: dict[str, list[str]] = collections.defaultdict(list)

    def add(kind: str, *values: Any) -> None:
        found[kind].extend(str(v) for v in values if v)

    if call.service == "ec2":
        add("instance", p.get("InstanceId"), *[r for r in p.get("Resources", []) if r.startswith("i-")])
        add("network-interface", p.get("NetworkInterfaceId"))
        add("security-group", p.get("GroupId"), *p.get("Groups", []), *[r for r in p.get("Resources", [])
                                                                         if r.startswith("sg-")])  # fmt: skip
        add("vpc", p.get("VpcId"))
        add("volume", p.get("VolumeId"))
        add("network-acl", p.get("NetworkAclId"))
        if call.operation == "CreateSecurityGroup":
            add("security-group", "sg-created")
        if call.operation == "CreateSnapshot":
            add("snapshot", "snap-created")
    elif call.service == "autoscaling":
        add("autoScalingGroup", p.get("AutoScalingGroupName"))
    elif call.service == "elasticloadbalancing":
        add("targetgroup", p.get("TargetGroupArn"))
    elif call.service == "iam":
        add("role", p.get("RoleName"))
        add("user", p.get("UserName"))
        add("instance-profile", p.get("InstanceProfileName"))
    elif call.service == "eks":
        add("cluster", p.get("name") or p.get("clusterName"))
        principal = str(p.get("principalArn") or "")
        if principal.startswith("arn:aws:iam::"):
            account, kind_name = principal.split(":", 5)[4:]
            kind, _, name = kind_name.partition("/")
            add("access-entry", f"{p['clusterName']}/{kind}/{account}/{name.rsplit('/', 1)[-1]}/uuid")
        add("podidentityassociation", f"{p['clusterName']}/{p['associationId']}" if "associationId" in p else None)
    elif call.service == "kms":
        add("key", p.get("KeyId"))
    elif call.service == "s3":
        add("object", f"{p['Bucket']}/{p['Key']}" if "Key" in p else None)
        add("bucket", p.get("Bucket") if "Key" not in p else None)
    elif call.service == "dynamodb":
        add("table", p.get("TableName"))
    elif call.service == "sns":
        add("topic", p.get("TopicArn"))
    elif call.service == "secretsmanager":
        add("secret", p.get("SecretId"))
    elif call.service == "ecr":
        add("repository", *_repositories(call))
    elif call.service == "sts":
        add("role", p.get("RoleArn"))
    elif call.service == "ssm":
        add("document", p.get("DocumentName"))
        add("instance", *p.get("InstanceIds", []))
    return found | _outputs_ids(call)


def _outputs_ids(call: Call) -> dict[str, list[str]]:
    """The resources the outputs act on: the bus an event is put on, the caller's Security Hub."""
    if call.service == "events":
        return {"event-bus": sorted({e.get("EventBusName") or "default" for e in call.params.get("Entries", [])})}
    if call.service == "securityhub":
        return {"hub": ["default"]}  # BatchUpdateFindings is authorised on the caller's hub
    return {}


def _arn(call: Call, kind: str, value: str) -> str:
    region = call.region
    ACCOUNT = call.account or HUB_ACCOUNT  # noqa: N806 - the account the call acted in
    if value.startswith("arn:"):
        return value
    built = {
        "instance": f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{value}",
        "network-interface": f"arn:aws:ec2:{region}:{ACCOUNT}:network-interface/{value}",
        "security-group": f"arn:aws:ec2:{region}:{ACCOUNT}:security-group/{value}",
        "vpc": f"arn:aws:ec2:{region}:{ACCOUNT}:vpc/{value}",
        "volume": f"arn:aws:ec2:{region}:{ACCOUNT}:volume/{value}",
        "snapshot": f"arn:aws:ec2:{region}::snapshot/{value}",
        "network-acl": f"arn:aws:ec2:{region}:{ACCOUNT}:network-acl/{value}",
        "autoScalingGroup": f"arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:"
        f"00000000-0000-0000-0000-000000000000:autoScalingGroupName/{value}",
        "role": f"arn:aws:iam::{ACCOUNT}:role/{value}",
        "user": f"arn:aws:iam::{ACCOUNT}:user/{value}",
        "instance-profile": f"arn:aws:iam::{ACCOUNT}:instance-profile/{value}",
        "cluster": f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{value}",
        "access-entry": f"arn:aws:eks:{region}:{ACCOUNT}:access-entry/{value}",
        "podidentityassociation": f"arn:aws:eks:{region}:{ACCOUNT}:podidentityassociation/{value}",
        "key": f"arn:aws:kms:{region}:{ACCOUNT}:key/{value}",
        "object": f"arn:aws:s3:::{value}",
        "bucket": f"arn:aws:s3:::{value}",
        "table": f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{value}",
        "secret": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{value}-AbCdEf",
        "document": f"arn:aws:ssm:{region}:{ACCOUNT}:document/{value}",
        "repository": f"arn:aws:ecr:{region}:{call.params.get('registryId', ACCOUNT)}:repository/{value}",
        "event-bus": f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{value}",
        "hub": f"arn:aws:securityhub:{region}:{ACCOUNT}:hub/{value}",
    }
    assert kind in built, (call.service, kind)
    return built[kind]


def _documented(action: str, arn: str) -> bool:
    """The ARN has a form the Service Authorization Reference gives for this action."""
    for form in _formats(action):
        if form == "*":
            continue
        pattern = re.escape(form).replace(re.escape("${Partition}"), "aws")
        pattern = re.sub(r"\\\$\\\{[A-Za-z0-9]+\\\}", ".+", pattern)
        if re.fullmatch(pattern, arn):
            return True
    return False


def authorisations(call: Call) -> list[Authorisation]:
    """What AWS checks for one call: each resource it acts on, with the condition keys it has."""
    if (call.service, call.operation) in NO_AUTHORISATION:
        return []
    action = IAM_NAMES.get((call.service, call.operation), f"{call.service}:{call.operation}")
    resource_level = any(f != "*" for f in _formats(action))
    checks: list[Authorisation] = []
    for kind, values in _ids(call).items():
        for value in values:
            arn = _arn(call, kind, value)
            if not resource_level or not _documented(action, arn):
                continue  # the action is not authorised on this kind of resource
            tags = call.tags.get(value, {})
            key = "ssm:resourceTag" if call.service == "ssm" else "aws:ResourceTag"  # SSM's own condition key
            checks.append(Authorisation(action, arn, {f"{key}/{k}": v for k, v in tags.items()}))
    if not checks:
        checks.append(Authorisation(action, "*"))
    for spec in call.params.get("TagSpecifications", []):  # tags set on creation: ec2:CreateTags too
        kind = {"security-group": "security-group", "snapshot": "snapshot"}[spec["ResourceType"]]
        created = "sg-created" if kind == "security-group" else "snap-created"
        context = {"ec2:CreateAction": call.operation}
        checks.append(Authorisation("ec2:CreateTags", _arn(call, kind, created), context))
    return checks


@cache
def _policy(function: str) -> dict[str, Any]:
    return permissions.iam_policy(PROOF_ENV, functions.BY_NAME[function], "test")


def _recorded() -> list[Call]:
    if not RECORDED:
        pytest.skip("no AWS call was recorded: the proof needs the whole integration suite to run first")
    return RECORDED


# Resources a test names on purpose although no stage would (a missing table): refused, as they must be.
NOT_THE_STAGES = ("table/no-such-table",)


def _spoke_policy(account: str) -> dict[str, Any]:
    """The spoke role's policy as CloudFormation hands it to IAM in `account`."""

    def resolved(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
            return value["Fn::Sub"].replace("${AWS::AccountId}", account)
        if isinstance(value, dict):
            return {k: resolved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolved(v) for v in value]
        return value

    template = permissions.spoke_template(PROOF_ENV, "test")
    return resolved(template["Resources"]["SpokeRole"]["Properties"]["Policies"][0]["PolicyDocument"])  # type: ignore[no-any-return]


def test_every_recorded_call_is_allowed_by_its_functions_policy() -> None:
    refused = []
    judged: collections.Counter[str] = collections.Counter()
    for call in _recorded():
        # A call made with a member account's spoke credentials is judged by the spoke role's policy.
        policy = _spoke_policy(call.account) if call.account else _policy(call.function)
        for check in authorisations(call):
            judged[call.function if not call.account else "spoke"] += 1
            verdict = evaluate(policy, check)
            if check.resource.endswith(NOT_THE_STAGES):
                assert verdict == "implicit deny", check
            elif verdict != "allowed":
                refused.append(f"{call.function}: {check.action} on {check.resource} {check.context}: {verdict}")
    assert not refused, "\n".join(sorted(set(refused)))
    # Every function with incidents was exercised.
    assert {"on_guardduty_finding", "on_kms_api_call", "on_ecr_image_scan", "on_flow_log_object",
            "refresh_key_policies", "spoke"} <= set(judged)  # fmt: skip


def test_writes_to_the_responders_own_and_protected_roles_are_denied() -> None:
    _recorded()
    targets = [f"arn:aws:iam::{ACCOUNT}:role/{f.role_name('test')}" for f in functions.FUNCTIONS]
    tagged = {"aws:ResourceTag/eks-responder:protected": "TRUE"}
    for function in functions.FUNCTIONS:
        policy = _policy(function.name)
        held = "iam:PutRolePolicy" in json.dumps(policy)
        checks = [Authorisation("iam:PutRolePolicy", t) for t in targets]
        checks.append(Authorisation("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/break-glass", tagged))
        for check in checks:
            verdict = evaluate(policy, check)
            assert verdict in {"denied", "implicit deny"}, (function.name, check)
            if held:
                assert verdict == "denied", (function.name, check)  # held elsewhere: explicitly denied here
        own = functions.BY_NAME["on_guardduty_finding"].role_name("test")
        access_entry = f"arn:aws:eks:us-east-1:{ACCOUNT}:access-entry/prod/role/{ACCOUNT}/{own}/uuid"
        assert evaluate(policy, Authorisation("eks:DeleteAccessEntry", access_entry)) != "allowed", function.name
    # ... while the same write to an ordinary role in the account is allowed where it is held, also to
    # one merely named like the responder's (anyone may create it) or like a break-glass,
    guardduty = _policy("on_guardduty_finding")
    for name in ("developer", "eks-responder-ci-deployer", "payments-breakglass-bot", "eks-responder-prod-x"):
        check = Authorisation("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{name}")
        assert evaluate(guardduty, check) == "allowed", name
    # and never in another account.
    other = Authorisation("iam:PutRolePolicy", "arn:aws:iam::999999999999:role/developer")
    assert evaluate(guardduty, other) == "implicit deny"


@cache
def _declared(function: functions.Function) -> set[str]:
    """The IAM actions the function's reachable actions declare (from the registry, not the policy)."""
    rules = permissions.stage_rules(PROOF_ENV)
    return {a for action in reach.reachable_actions(function, rules) for s in action.iam for a in s.actions}


def test_a_function_cannot_make_the_writes_of_another_functions_playbooks() -> None:
    reads = ("Describe", "Get", "List", "Head")
    playbook = {"iam", "eks", "kms", "ec2", "autoscaling"}
    playbook_writes = [c for c in _recorded() if c.service in playbook and not c.operation.startswith(reads)]
    crossed = 0
    for call in playbook_writes:
        for check in authorisations(call):
            for other in functions.FUNCTIONS:
                if check.action in _declared(other) or other.name == call.function:
                    continue
                crossed += 1
                verdict = evaluate(_policy(other.name), check)
                assert verdict != "allowed", f"{other.name} may {check.action} on {check.resource} ({call.function}'s)"
    assert crossed > 0


def test_the_evaluator_understands_resources_conditions_and_variables() -> None:
    """The simulation itself, on known cases: what the proof above relies on."""
    own = "arn:aws:iam::${aws:PrincipalAccount}:role/"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:PutRolePolicy"], "Resource": [own + "*"]},
        {"Effect": "Deny", "Action": ["iam:PutRolePolicy"], "Resource": [own + "own-*"]},
        {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": ["arn:aws:ec2:*:*:instance/*"],
         "Condition": {"Null": {"aws:ResourceTag/eks:cluster-name": "false"}}},
    ]}  # fmt: skip
    role = f"arn:aws:iam::{ACCOUNT}:role/"
    assert evaluate(policy, Authorisation("iam:PutRolePolicy", role + "developer")) == "allowed"
    assert evaluate(policy, Authorisation("iam:PutRolePolicy", role + "own-function")) == "denied"
    assert evaluate(policy, Authorisation("iam:PutRolePolicy", "arn:aws:iam::999999999999:role/x")) == "implicit deny"
    assert evaluate(policy, Authorisation("iam:UpdateAccessKey", role + "developer")) == "implicit deny"
    node = f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-1"
    assert (
        evaluate(policy, Authorisation("ec2:CreateTags", node, {"aws:ResourceTag/eks:cluster-name": "p"})) == "allowed"
    )
    assert evaluate(policy, Authorisation("ec2:CreateTags", node)) == "implicit deny"
