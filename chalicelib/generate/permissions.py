"""Generate the Lambda's IAM policies and the Kubernetes ClusterRole from what the code declares.

Each action, executor and notifier declares the IAM statements and RBAC rules it needs; this
module merges them into `.chalice/policy-<stage>.json` and `deploy/rbac/clusterrole.yaml`.

    python -m chalicelib.generate.permissions           # write the files
    python -m chalicelib.generate.permissions --check   # exit 1 when a committed file is stale
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from chalicelib import functions
from chalicelib.actions.base import Action
from chalicelib.actions.ec2 import memory_document
from chalicelib.interfaces import IAMStatement, RBACRule
from chalicelib.policy import reach

if TYPE_CHECKING:
    from chalicelib.policy.model import RulesFile

ROOT = Path(__file__).resolve().parents[2]
CHALICE_DIR = ROOT / ".chalice"
CLUSTER_ROLE_FILE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"
BOUNDS_FILE = ROOT / "deploy" / "rbac" / "responder-bounds.yaml"
KYVERNO_BOUNDS_FILE = ROOT / "deploy" / "rbac" / "responder-bounds-kyverno.yaml"
IMAGE_BLOCKS_FILE = ROOT / "deploy" / "rbac" / "image-blocks.yaml"
RULES_SCHEMA_FILE = ROOT / "chalicelib" / "policy" / "rules.schema.json"
CLUSTER_ROLE_NAME = "eks-responder"
RESPONDER_GROUP = "eks-responders"

# IAM writes a function may hold, and how the resources they act on are named: each gets an
# explicit Deny on the responder's own roles and on the protected principals.
IAM_WRITES: dict[str, tuple[str, ...]] = {
    "iam:PutRolePolicy": ("arn:aws:iam::{account}:role/{name}", "arn:aws:iam::{account}:role/*/{name}"),
    "iam:UpdateAccessKey": ("arn:aws:iam::{account}:user/{name}", "arn:aws:iam::{account}:user/*/{name}"),
    "iam:DeleteRolePolicy": ("arn:aws:iam::{account}:role/{name}", "arn:aws:iam::{account}:role/*/{name}"),
    "eks:DeleteAccessEntry": ("arn:aws:eks:{region}:{account}:access-entry/*/*/*/{name}/*",),
}
CLUSTER_KINDS = {"pod", "node", "binding", "principal", "image"}
IDENTITY_KINDS = {"role", "user", "principal", "key"}


def reachable_everywhere() -> list[Action]:
    """The actions any function of any stage can reach with its stage's rules."""
    found: dict[str, Action] = {}
    for env in _stages(_config()).values():
        rules = stage_rules(env)
        for function in functions.FUNCTIONS:
            for action in reach.reachable_actions(function, rules):
                found[action.name] = action
    return [found[name] for name in sorted(found)]


def rbac_rules(reached: list[Action] | None = None) -> list[RBACRule]:
    """The ClusterRole's rules: target resolution, and the actions the rules can reach — no grant
    for an action no rule uses (`pods delete` appears only when a rule enables k8s:delete-pod)."""
    from chalicelib.executors.kube import RBAC as RESOLVE

    chosen = reachable_everywhere() if reached is None else reached
    merged: dict[tuple[str, str, tuple[str, ...]], set[str]] = defaultdict(set)
    for rule in [*RESOLVE, *(r for a in chosen for r in (*a.rbac, *a.release_rbac))]:
        merged[(rule.api_group, rule.resource, rule.resource_names)].update(rule.verbs)
    return [
        RBACRule(group, resource, tuple(sorted(verbs)), names)
        for (group, resource, names), verbs in sorted(merged.items())
    ]


def stage_rules(stage_env: dict[str, str]) -> RulesFile:
    from chalicelib.policy.loader import load_rules
    from chalicelib.settings import DEFAULT_RULES_FILE

    given = stage_env.get("RULES_FILE")
    return load_rules(ROOT / given if given else DEFAULT_RULES_FILE)


def needs_cluster(function: functions.Function, rules: RulesFile) -> bool:
    """Whether the function's role must be mapped into Kubernetes (the generated ClusterRole's group)."""
    kinds = {a.target_kind for a in reach.reachable_actions(function, rules)}
    return bool(kinds & CLUSTER_KINDS) or bool({"flowlogs", "ecr", "inspector"} & set(function.sources))


def iam_statements(stage_env: dict[str, str], function: functions.Function, rules: RulesFile) -> list[IAMStatement]:
    """What one function needs: its log group, what its source reads, and the actions its rules reach."""
    from chalicelib.executors import flow_sources
    from chalicelib.executors.eks_auth import IAM as EKS_AUTH
    from chalicelib.executors.identity import IAM as IDENTITY
    from chalicelib.executors.kms import IAM as KEYS
    from chalicelib.executors.scan_findings import IAM as SCANS
    from chalicelib.flowlogs.attribution import IAM as ATTRIBUTION

    reached = reach.reachable_actions(function, rules)
    kinds = {a.target_kind for a in reached}
    sources = set(function.sources)
    snapshot = function.kind == "snapshot"
    group = "arn:aws:logs:{region}:{account}:log-group:" + function.log_group("{stage}")
    statements = [
        IAMStatement(("logs:CreateLogGroup",), (group,)),
        IAMStatement(("logs:CreateLogStream", "logs:PutLogEvents"), (f"{group}:*",)),
    ]
    from chalicelib.entry import delivery

    statements.extend(delivery.permissions(function))
    if function.kind == "approvals":
        return [*statements, *_approval_statements(stage_env)]
    if function.kind == "expiry":
        return [*statements, *_expiry_statements(stage_env)]
    if function.kind == "captures":
        return [*statements, *_capture_statements(stage_env)]
    if needs_cluster(function, rules) or "key" in kinds or snapshot:
        statements.extend(EKS_AUTH)  # the cluster's endpoint, or its secrets key
    if kinds & IDENTITY_KINDS:
        statements.extend(IDENTITY)
    if "key" in kinds or snapshot:
        statements.extend(KEYS)
    if "ecr" in sources:
        statements.extend(SCANS)
    if "securityhub" in sources:
        from chalicelib.executors.guardduty_findings import IAM as NATIVE_FINDINGS

        statements.extend(NATIVE_FINDINGS)  # the native finding behind a Security Hub copy
    if "flowlogs" in sources:
        statements.extend([*ATTRIBUTION, *flow_sources.permissions(stage_env)])
    for action in reached:
        statements.extend([*action.iam, *action.release_iam])  # a release runs where the action ran
    if function.sources:
        from chalicelib.executors import accounts, ledger
        from chalicelib.notifiers import outputs

        statements.extend([*outputs.permissions(stage_env), *ledger.permissions(stage_env),
                           *accounts.permissions(stage_env), *accounts.naming_permissions(stage_env)])  # fmt: skip
    if snapshot:
        from chalicelib.executors import accounts

        statements.extend(accounts.permissions(stage_env))  # members' keys, through their spoke roles
    if snapshot or "key" in kinds or any(a.writes_evidence for a in reached):
        buckets = {stage_env.get("EVIDENCE_BUCKET") or "", stage_env.get("KEY_POLICY_BUCKET") or ""} - {""}
        for bucket in sorted(buckets):
            statements.extend(_bucket_statements(bucket))
    return statements


def _approval_statements(stage_env: dict[str, str]) -> list[IAMStatement]:
    """The Slack route records decisions in the plan's item, tells a rejection, and hands the
    approved steps to the function that owns the playbook: it holds no containment permission of
    its own (nor the finding write-back's)."""
    from chalicelib.executors import ledger
    from chalicelib.notifiers import outputs, slack

    owners = sorted({functions.for_source(s).name for f in functions.FUNCTIONS for s in f.sources})
    invoke = tuple(f"arn:aws:lambda:{{region}}:{{account}}:function:{functions.APP_NAME}-{{stage}}-{name}"
                   for name in owners)  # fmt: skip
    table = [
        IAMStatement(("dynamodb:GetItem", "dynamodb:UpdateItem"), s.resources) for s in ledger.permissions(stage_env)
    ]
    return [*table, *slack.signing_permissions(stage_env), IAMStatement(("lambda:InvokeFunction",), invoke),
            *outputs.permissions(stage_env, write_back=False)]  # fmt: skip


def _expiry_statements(stage_env: dict[str, str]) -> list[IAMStatement]:
    """Reading the kept plans, marking the expired ones, and telling: no containment permission."""
    from chalicelib.executors import ledger
    from chalicelib.notifiers import outputs

    table = [IAMStatement(("dynamodb:Scan", "dynamodb:UpdateItem"), s.resources) for s in ledger.permissions(stage_env)]
    return [*table, *outputs.permissions(stage_env, write_back=False)]


def _capture_statements(stage_env: dict[str, str]) -> list[IAMStatement]:
    """Reading its own capture records and the node's hashes, writing the manifest, and telling:
    no access to the node, SSM or any member account."""
    from chalicelib.notifiers import outputs

    bucket = stage_env.get("EVIDENCE_BUCKET") or ""
    return [*(_bucket_statements(bucket) if bucket else []), *outputs.permissions(stage_env)]


def deny_statements(stage_env: dict[str, str], allowed: list[IAMStatement]) -> list[IAMStatement]:
    """An explicit Deny, for every IAM write the function holds, on the responder's own roles (by
    exact name: the stage's function roles and the spoke role), on the protected principals (exact
    ARNs) and on every role or user tagged PROTECTED_PRINCIPAL_TAG=true: no bug in a handler can turn
    the responder on itself or the break-glass. Never a name glob: anyone who may create a role
    could match one and so be spared."""
    from chalicelib.settings import Settings

    held = sorted({a for s in allowed for a in s.actions if a in IAM_WRITES})
    settings = Settings.from_env(stage_env)
    own = [*(f.role_name("{stage}") for f in functions.FUNCTIONS), settings.spoke_role]
    protected = settings.protected_principals
    denies = []
    for action in held:
        kind = "user" if ":user/" in IAM_WRITES[action][0] else "role"
        if action.startswith("eks:"):
            # An access entry's ARN names its principal's kind, account and name (not its path).
            pattern = IAM_WRITES[action][0]
            names = [*(("role", "{account}", n) for n in own if n in _cluster_roles(stage_env)),
                     *((_kind_of(p), p.split(":")[4], p.rsplit("/", 1)[-1]) for p in protected)]  # fmt: skip
            resources = [pattern.replace("*/*/{name}", f"{k}/{a}/{n}") for k, a, n in names]
        else:
            exact = [f"arn:aws:iam::{{account}}:role/{n}" for n in own] if kind == "role" else []
            resources = [*exact, *(p for p in protected if _kind_of(p) == kind)]
        if resources:
            denies.append(IAMStatement((action,), tuple(dict.fromkeys(resources)), effect="Deny"))
        if not action.startswith("eks:"):
            tagged = {"StringEqualsIgnoreCase": {f"aws:ResourceTag/{settings.protected_principal_tag}": "true"}}
            denies.append(IAMStatement((action,), (f"arn:aws:iam::{{account}}:{kind}/*",), tagged, "Deny"))
    return denies


def _kind_of(arn: str) -> str:
    return "user" if ":user/" in arn else "role"


def _cluster_roles(stage_env: dict[str, str]) -> set[str]:
    """The own roles that may hold an access entry: the event functions' (they reach clusters) and the spoke's."""
    from chalicelib.settings import Settings

    names = {f.role_name("{stage}") for f in functions.FUNCTIONS if f.sources}
    return names | {Settings.from_env(stage_env).spoke_role}


def _bucket_statements(bucket: str) -> list[IAMStatement]:
    from chalicelib.executors.evidence import IAM_S3

    return [IAMStatement(s.actions, tuple(r.replace("{evidence_bucket}", bucket) for r in s.resources)) for s in IAM_S3]


def _sid(effect: str, actions_: tuple[str, ...], resources: tuple[str, ...]) -> str:
    # Deterministic, readable ids keep regenerated diffs reviewable.
    words = [a.replace(":", " ").replace("*", "").title().replace(" ", "") for a in actions_[:2]]
    parts = re.sub(r"\$\{[^}]*\}", "x", resources[0]).split(":", 5)
    kind = re.split("[:/]", parts[5])[0] if len(parts) == 6 else "Any"  # noqa: PLR2004 - arn:partition:service:region:account:resource
    on = "".join(part.title() for part in kind.replace("-", " ").split())
    prefix = "Deny" if effect == "Deny" else ""
    return prefix + "".join(words)[:90] + "On" + on


def iam_policy(stage_env: dict[str, str], function: functions.Function, stage: str = "dev") -> dict[str, Any]:
    """The function's policy document. Without POLICY_ACCOUNT_ID, resources are scoped to the
    function's own account through the `${aws:PrincipalAccount}` policy variable, never `*`."""
    values = {
        "account": stage_env.get("POLICY_ACCOUNT_ID") or "${aws:PrincipalAccount}",
        "region": stage_env.get("POLICY_REGION") or "*",
        "evidence_bucket": stage_env.get("EVIDENCE_BUCKET") or "",
        "stage": stage,
    }
    allowed = iam_statements(stage_env, function, stage_rules(stage_env))
    return _document(allowed, deny_statements(stage_env, allowed), values)


def _document(allowed: list[IAMStatement], denied: list[IAMStatement], values: dict[str, str]) -> dict[str, Any]:
    merged: dict[tuple[str, tuple[str, ...], str], set[str]] = defaultdict(set)
    for stmt in [*allowed, *denied]:
        resources = tuple(_fill(r, values) for r in stmt.resources)
        merged[(stmt.effect, resources, json.dumps(stmt.conditions, sort_keys=True))].update(stmt.actions)
    body = []
    seen: set[str] = set()
    for (effect, resources, conditions), acts in sorted(
        merged.items(), key=lambda kv: (kv[0][0], sorted(kv[1]), kv[0][1])
    ):
        ordered = tuple(sorted(acts))
        sid = _sid(effect, ordered, resources)
        while sid in seen:
            sid += "X"
        seen.add(sid)
        statement: dict[str, Any] = {"Sid": sid, "Effect": effect, "Action": list(ordered), "Resource": list(resources)}
        condition = json.loads(conditions)
        if condition:
            statement["Condition"] = condition
        body.append(statement)
    return {"Version": "2012-10-17", "Statement": body}


SPOKE_DIR = ROOT / "deploy" / "spoke"


def spoke_statements(stage_env: dict[str, str]) -> list[IAMStatement]:
    """What the playbooks need in a member account: every action the stage's event functions reach
    (and its release), and the reads that resolve targets. Nothing of the hub's own: no logs, no
    incident table, no notifications, no evidence bucket, no AssumeRole."""
    from chalicelib.executors.eks_auth import IAM as EKS_AUTH
    from chalicelib.executors.identity import ALIAS
    from chalicelib.executors.identity import IAM as IDENTITY
    from chalicelib.executors.kms import IAM as KEYS
    from chalicelib.executors.scan_findings import IAM as SCANS
    from chalicelib.flowlogs.attribution import IAM as ATTRIBUTION

    rules = stage_rules(stage_env)
    reached: dict[str, Action] = {}
    for function in functions.FUNCTIONS:
        if function.kind == "events":
            reached.update((a.name, a) for a in reach.reachable_actions(function, rules))
    kinds = {a.target_kind for a in reached.values()}
    from chalicelib.executors.flow_sources import bucket_permissions

    # A member's own flow-log bucket is read there (FLOW_LOGS_BUCKET with `{account}`, or a central one it owns).
    from chalicelib.executors.guardduty_findings import IAM as NATIVE_FINDINGS

    statements = [*EKS_AUTH, *SCANS, *ATTRIBUTION, *ALIAS, *NATIVE_FINDINGS, *bucket_permissions(stage_env)]
    if kinds & IDENTITY_KINDS:
        statements.extend(IDENTITY)
    if "key" in kinds:
        statements.extend(KEYS)
    for action in sorted(reached.values(), key=lambda a: a.name):
        statements.extend([*action.iam, *action.release_iam])
    return statements


def spoke_template(stage_env: dict[str, str], stage: str) -> dict[str, Any]:
    """The member account's role (CloudFormation, for StackSets): the playbooks' permissions, trusted
    by the hub's event functions only, with the external id."""
    allowed = spoke_statements(stage_env)
    # The account each stack instance lands in, filled by CloudFormation (StackSets: one per member).
    values = {"account": "${AWS::AccountId}", "region": stage_env.get("POLICY_REGION") or "*", "stage": stage}
    document = _document(allowed, deny_statements(stage_env, allowed), values)
    for statement in document["Statement"]:
        statement["Resource"] = [{"Fn::Sub": r} if "${" in r else r for r in statement["Resource"]]
    hub_roles = [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{HubAccountId}}:role/{f.role_name(stage)}"}
                 for f in functions.FUNCTIONS if f.kind == "events"]  # fmt: skip
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": hub_roles}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
        }],
    }  # fmt: skip
    from chalicelib.settings import Settings

    role = Settings.from_env(stage_env).spoke_role
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"eks-responder spoke role for stage {stage} (generated by `python -m chalicelib.generate.permissions`)"
        ),
        "Parameters": {
            "HubAccountId": {
                "Type": "String",
                "AllowedPattern": "^[0-9]{12}$",
                "Description": "The account the responder runs in (the delegated administrator)",
            },
            "ExternalId": {
                "Type": "String",
                "MinLength": 2,
                "MaxLength": 1224,
                "NoEcho": True,
                "Description": "SPOKE_EXTERNAL_ID of the hub's stage",
            },
            # ec2:capture-memory sends this account's copy of the document; without it, no capture here.
            "HubEvidenceBucket": {
                **memory_document.evidence_parameter(),
                "Default": "none",
                "AllowedPattern": f"^none$|{memory_document.BUCKET_NAME}",
            },
        },
        "Conditions": {"CapturesMemory": {"Fn::Not": [{"Fn::Equals": [{"Ref": "HubEvidenceBucket"}, "none"]}]}},
        "Resources": {
            "MemoryCaptureDocument": {
                **memory_document.resource(stage, "HubEvidenceBucket"),
                "Condition": "CapturesMemory",
            },
            "SpokeRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": role,
                    "Description": "Assumed by eks-responder in the hub account to contain EKS incidents here",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": trust,
                    "Policies": [{"PolicyName": "eks-responder-playbooks", "PolicyDocument": document}],
                },
            },
        },
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["SpokeRole", "Arn"]}}},
    }


REGIONS_DIR = ROOT / "deploy" / "regions"
SSM_DIR = ROOT / "deploy" / "ssm"
FINDING_TYPES_PAGE = ROOT / "docs" / "finding-types.md"


def forwarding_template() -> dict[str, Any]:
    """One region's forwarding to the hub (CloudFormation, for StackSets over regions): the same
    patterns the hub's functions subscribe to, sent to the hub's default bus in its home region.
    Flow-log objects too: the event keeps the bucket's account and region, where the hub reads it."""
    from chalicelib.sources import patterns

    forwarded = {
        "GuardDutyFindings": patterns.GUARDDUTY_FINDING,
        "SecurityHubGuardDutyFindings": patterns.SECURITYHUB_GUARDDUTY_FINDING,
        "KmsApiCalls": patterns.KMS_API_CALL,
        "KmsKeyEvents": patterns.KMS_KEY_EVENT,
        "EcrImageScans": patterns.ECR_IMAGE_SCAN,
        "InspectorImageFindings": patterns.INSPECTOR_IMAGE_FINDING,
        "FlowLogObjects": patterns.FLOW_LOG_OBJECT,
        "MemoryCaptureStatus": patterns.MEMORY_CAPTURE_STATUS,
    }
    bus = {"Fn::Sub": "arn:${AWS::Partition}:events:${HubRegion}:${HubAccountId}:event-bus/default"}
    resources: dict[str, Any] = {
        "ForwardingRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "put-events-to-the-hub",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus}],
                        },
                    }
                ],
            },
        }
    }
    for name, pattern in forwarded.items():
        resources[name] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": f"eks-responder: forward {name} to the hub",
                "EventPattern": pattern,
                "State": "ENABLED",
                "Targets": [{"Id": "hub", "Arn": bus, "RoleArn": {"Fn::GetAtt": ["ForwardingRole", "Arn"]}}],
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "eks-responder: forward a region's findings to the hub (generated; do not edit)",
        "Parameters": {
            "HubAccountId": {"Type": "String", "AllowedPattern": "^[0-9]{12}$"},
            "HubRegion": {"Type": "String", "AllowedPattern": "^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"},
        },
        "Resources": resources,
    }


def _fill(template: str, values: dict[str, str]) -> str:
    # str.format would read the `${aws:...}` policy variable as a field: replace the named slots only.
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def policy_file(stage: str, function: functions.Function) -> str:
    return f"policy-{stage}-{function.name}.json"


def _rbac_rule(rule: RBACRule) -> dict[str, Any]:
    body: dict[str, Any] = {"apiGroups": [rule.api_group], "resources": [rule.resource]}
    if rule.resource_names:
        body["resourceNames"] = list(rule.resource_names)
    body["verbs"] = list(rule.verbs)
    return body


def cluster_role_documents(reached: list[Action] | None = None) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "eks-responder", "app.kubernetes.io/managed-by": "eks-responder"}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE_NAME, "labels": labels},
        "rules": [_rbac_rule(r) for r in rbac_rules(reached)],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE_NAME, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE_NAME},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": RESPONDER_GROUP}],
    }
    return [role, binding]


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHALICE_DIR / "config.json").read_text())
    return loaded


def _stages(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    base_env: dict[str, str] = config.get("environment_variables", {})
    return {name: {**base_env, **stage.get("environment_variables", {})} for name, stage in config["stages"].items()}


def chalice_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json with every function of every stage pointing at its own policy file, and with
    a reserved concurrency (chalicelib.entry.delivery's, unless the stage sets its own)."""
    from chalicelib.entry import delivery

    updated: dict[str, Any] = copy.deepcopy(config)
    for name, stage in updated["stages"].items():
        stage.pop("iam_policy_file", None)
        per_function = stage.setdefault("lambda_functions", {})
        for function in functions.FUNCTIONS:
            own = per_function.setdefault(function.name, {})
            own["iam_policy_file"] = policy_file(name, function)
            own.setdefault("reserved_concurrency", delivery.BY_FUNCTION[function.name].reserved_concurrency)
    return updated


def cluster_roles(stage: str, stage_env: dict[str, str]) -> list[str]:
    """The roles to map into Kubernetes for a stage: exactly the functions that reach a cluster."""
    rules = stage_rules(stage_env)
    return [f.role_name(stage) for f in functions.FUNCTIONS if needs_cluster(f, rules)]


def rendered() -> dict[Path, str]:
    """Every generated file and the text it should have."""
    files: dict[Path, str] = {}
    config = _config()
    for stage, env in _stages(config).items():
        for function in functions.FUNCTIONS:
            policy = iam_policy(env, function, stage)
            files[CHALICE_DIR / policy_file(stage, function)] = json.dumps(policy, indent=2) + "\n"
    files[CHALICE_DIR / "config.json"] = json.dumps(chalice_config(config), indent=2) + "\n"
    for stage, env in _stages(config).items():
        files[SPOKE_DIR / f"spoke-role-{stage}.json"] = json.dumps(spoke_template(env, stage), indent=2) + "\n"
    for stage in _stages(config):
        files[SSM_DIR / f"memory-capture-{stage}.json"] = json.dumps(memory_document.template(stage), indent=2) + "\n"
    files[REGIONS_DIR / "forward-to-hub.json"] = json.dumps(forwarding_template(), indent=2) + "\n"
    header = (
        "# Generated by `python -m chalicelib.generate.permissions` from the actions' declarations. Do not edit.\n"
        "# Bind the Lambda's IAM role to the group below with an EKS access entry or aws-auth (see docs/deploy.md).\n"
    )
    files[CLUSTER_ROLE_FILE] = header + yaml.safe_dump_all(cluster_role_documents(), sort_keys=False)
    from chalicelib.generate import bounds

    files[BOUNDS_FILE] = (
        "# Generated by `python -m chalicelib.generate.permissions`. Do not edit."
        " Kubernetes 1.30+ (docs/security-model.md):\n"
        "# what the responder's own identity may change, whatever its ClusterRole allows.\n"
    ) + yaml.safe_dump_all(bounds.documents(RESPONDER_GROUP), sort_keys=False, width=200)
    from chalicelib.actions.k8s.block_image import image_blocks_documents
    from chalicelib.settings import Settings

    files[IMAGE_BLOCKS_FILE] = (
        "# Generated by `python -m chalicelib.generate.permissions`. Do not edit. Kubernetes 1.30+ (docs/images.md):\n"
        "# the standing policy that keeps blocked images out; k8s:block-image only adds entries to its ConfigMap.\n"
        "# The binding spares the default protected namespaces: add yours to its namespaceSelector.\n"
    ) + yaml.safe_dump_all(image_blocks_documents(Settings().all_protected_namespaces), sort_keys=False, width=200)
    files[KYVERNO_BOUNDS_FILE] = (
        "# Generated by `python -m chalicelib.generate.permissions`. Do not edit."
        " Kyverno 1.11+ (docs/security-model.md):\n"
        "# the same bounds as responder-bounds.yaml, for clusters that run Kyverno instead.\n"
    ) + yaml.safe_dump(bounds.kyverno_document(RESPONDER_GROUP), sort_keys=False, width=200)
    # Not a permission, but generated the same way: editors validate rules files against it.
    import msgspec.json

    from chalicelib.policy.model import RulesFile

    files[RULES_SCHEMA_FILE] = json.dumps(msgspec.json.schema(RulesFile), indent=2) + "\n"
    from chalicelib.policy import coverage
    from chalicelib.policy.loader import load_rules, parsed_copy, parsed_copy_path
    from chalicelib.settings import DEFAULT_RULES_FILE

    # Not a permission either: the shipped rules' parsed copy, so a cold start needs no YAML parser.
    files[parsed_copy_path(DEFAULT_RULES_FILE)] = parsed_copy(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))

    files[FINDING_TYPES_PAGE] = coverage.table(load_rules(DEFAULT_RULES_FILE))
    from chalicelib.generate import reference_pages

    files.update(reference_pages.pages(load_rules(DEFAULT_RULES_FILE), FINDING_TYPES_PAGE.parent))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.generate.permissions", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when a committed file differs")
    parser.add_argument("--cluster-roles", metavar="STAGE", help="print the roles to map into Kubernetes, then exit")
    args = parser.parse_args(argv)
    if args.cluster_roles:
        stages = _stages(_config())
        if args.cluster_roles not in stages:
            sys.stderr.write(f"no stage {args.cluster_roles!r} in .chalice/config.json\n")
            return 2
        sys.stdout.write("".join(f"{r}\n" for r in cluster_roles(args.cluster_roles, stages[args.cluster_roles])))
        return 0
    stale = []
    files = rendered()
    generated = {*CHALICE_DIR.glob("policy-*.json"), *(FINDING_TYPES_PAGE.parent / "reference").rglob("*.md")}
    for leftover in sorted(generated - set(files)):
        if args.check:
            stale.append(f"{leftover.relative_to(ROOT)} (no longer generated)")
        else:
            leftover.unlink()
            sys.stdout.write(f"removed {leftover.relative_to(ROOT)}\n")
    for path, text in files.items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
    if stale:
        sys.stderr.write(f"stale generated files: {', '.join(stale)}; run `make permissions`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
