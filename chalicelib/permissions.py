"""Generate the Lambda's IAM policies and the Kubernetes ClusterRole from what the code declares.

Each action, executor and notifier declares the IAM statements and RBAC rules it needs; this
module merges them into `.chalice/policy-<stage>.json` and `deploy/rbac/clusterrole.yaml`.

    python -m chalicelib.permissions           # write the files
    python -m chalicelib.permissions --check   # exit 1 when a committed file is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from chalicelib import actions
from chalicelib.actions.base import IAMStatement, RBACRule

ROOT = Path(__file__).resolve().parent.parent
CHALICE_DIR = ROOT / ".chalice"
CLUSTER_ROLE_FILE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"
RULES_SCHEMA_FILE = ROOT / "chalicelib" / "policy" / "rules.schema.json"
CLUSTER_ROLE_NAME = "eks-responder"
RESPONDER_GROUP = "eks-responders"

LOGS: tuple[IAMStatement, ...] = (
    IAMStatement(
        ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
        ("arn:aws:logs:{region}:{account}:log-group:/aws/lambda/eks-responder-*",),
    ),
)


def rbac_rules() -> list[RBACRule]:
    from chalicelib.executors.kube import RBAC as RESOLVE

    merged: dict[tuple[str, str, tuple[str, ...]], set[str]] = defaultdict(set)
    for rule in [*RESOLVE, *(r for a in actions.REGISTRY.values() for r in a.rbac)]:
        merged[(rule.api_group, rule.resource, rule.resource_names)].update(rule.verbs)
    return [
        RBACRule(group, resource, tuple(sorted(verbs)), names)
        for (group, resource, names), verbs in sorted(merged.items())
    ]


def iam_statements(stage_env: dict[str, str]) -> list[IAMStatement]:
    from chalicelib.executors import flow_sources
    from chalicelib.executors.eks_auth import IAM as EKS_AUTH
    from chalicelib.executors.identity import IAM as IDENTITY
    from chalicelib.executors.kms import IAM as KEYS
    from chalicelib.executors.scan_findings import IAM as SCANS
    from chalicelib.flowlogs.attribution import IAM as ATTRIBUTION

    statements = [
        *LOGS,
        *EKS_AUTH,
        *IDENTITY,
        *KEYS,
        *SCANS,
        *ATTRIBUTION,
        *flow_sources.permissions(stage_env),
        *(s for a in actions.REGISTRY.values() for s in a.iam),
    ]
    from chalicelib.executors import ledger
    from chalicelib.notifiers import slack, sns

    statements.extend([*slack.permissions(stage_env), *sns.permissions(stage_env), *ledger.permissions(stage_env)])
    buckets = {stage_env.get("EVIDENCE_BUCKET") or "", stage_env.get("KEY_POLICY_BUCKET") or ""} - {""}
    for bucket in sorted(buckets):
        statements.extend(_bucket_statements(bucket))
    return statements


def _bucket_statements(bucket: str) -> list[IAMStatement]:
    from chalicelib.executors.evidence import IAM_S3

    return [IAMStatement(s.actions, tuple(r.replace("{evidence_bucket}", bucket) for r in s.resources)) for s in IAM_S3]


def _sid(actions_: tuple[str, ...], resources: tuple[str, ...]) -> str:
    # Deterministic, readable ids keep regenerated diffs reviewable.
    words = [a.replace(":", " ").replace("*", "").title().replace(" ", "") for a in actions_[:2]]
    parts = resources[0].split(":", 5)
    kind = re.split("[:/]", parts[5])[0] if len(parts) == 6 else "Any"  # noqa: PLR2004 - arn:partition:service:region:account:resource
    on = "".join(part.title() for part in kind.replace("-", " ").split())
    return "".join(words)[:90] + "On" + on


def iam_policy(stage_env: dict[str, str]) -> dict[str, Any]:
    values = {
        "account": stage_env.get("POLICY_ACCOUNT_ID") or "*",
        "region": stage_env.get("POLICY_REGION") or "*",
        "evidence_bucket": stage_env.get("EVIDENCE_BUCKET") or "",
    }
    merged: dict[tuple[tuple[str, ...], str], set[str]] = defaultdict(set)
    for stmt in iam_statements(stage_env):
        resources = tuple(r.format(**values) for r in stmt.resources)
        merged[(resources, json.dumps(stmt.conditions, sort_keys=True))].update(stmt.actions)
    body = []
    seen: set[str] = set()
    for (resources, conditions), acts in sorted(merged.items(), key=lambda kv: (sorted(kv[1]), kv[0])):
        ordered = tuple(sorted(acts))
        sid = _sid(ordered, resources)
        while sid in seen:
            sid += "X"
        seen.add(sid)
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": list(ordered),
            "Resource": list(resources),
        }
        condition = json.loads(conditions)
        if condition:
            statement["Condition"] = condition
        body.append(statement)
    return {"Version": "2012-10-17", "Statement": body}


def _rbac_rule(rule: RBACRule) -> dict[str, Any]:
    body: dict[str, Any] = {"apiGroups": [rule.api_group], "resources": [rule.resource]}
    if rule.resource_names:
        body["resourceNames"] = list(rule.resource_names)
    body["verbs"] = list(rule.verbs)
    return body


def cluster_role_documents() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "eks-responder", "app.kubernetes.io/managed-by": "eks-responder"}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE_NAME, "labels": labels},
        "rules": [_rbac_rule(r) for r in rbac_rules()],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE_NAME, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE_NAME},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": RESPONDER_GROUP}],
    }
    return [role, binding]


def _stages() -> dict[str, dict[str, Any]]:
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    base_env: dict[str, str] = config.get("environment_variables", {})
    stages: dict[str, dict[str, Any]] = {}
    for name, stage in config["stages"].items():
        stages[name] = {
            "env": {**base_env, **stage.get("environment_variables", {})},
            "policy_file": stage.get("iam_policy_file", f"policy-{name}.json"),
        }
    return stages


def rendered() -> dict[Path, str]:
    """Every generated file and the text it should have."""
    files: dict[Path, str] = {}
    for stage in _stages().values():
        files[CHALICE_DIR / stage["policy_file"]] = json.dumps(iam_policy(stage["env"]), indent=2) + "\n"
    header = (
        "# Generated by `python -m chalicelib.permissions` from the actions' declarations. Do not edit.\n"
        "# Bind the Lambda's IAM role to the group below with an EKS access entry or aws-auth (see README).\n"
    )
    files[CLUSTER_ROLE_FILE] = header + yaml.safe_dump_all(cluster_role_documents(), sort_keys=False)
    # Not a permission, but generated the same way: editors validate rules files against it.
    from chalicelib.policy.model import RulesFile

    files[RULES_SCHEMA_FILE] = json.dumps(RulesFile.model_json_schema(), indent=2) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.permissions", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
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
