"""Permissions are data: the generated files are current, complete and valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import parliament
import pytest

from chalicelib import actions, functions
from chalicelib.errors import ConfigError
from chalicelib.generate import permissions
from chalicelib.settings import Settings

KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
# IAM actions that are not API operations of the same name.
IAM_ONLY_ACTIONS = {"s3:ListBucket", "lambda:InvokeFunction"}  # IAM names of ListObjectsV2 and Invoke
SERVICE_MODELS = {
    "eks": "eks",
    "guardduty": "guardduty",
    "elasticloadbalancing": "elbv2",
    "logs": "logs",
    "s3": "s3",
    "ec2": "ec2",
    "iam": "iam",
    "sts": "sts",
    "autoscaling": "autoscaling",
    "kms": "kms",
    "ecr": "ecr",
    "dynamodb": "dynamodb",
    "sns": "sns",
    "sqs": "sqs",
    "secretsmanager": "secretsmanager",
    "lambda": "lambda",
    "ssm": "ssm",
}


def test_committed_generated_files_are_current() -> None:
    for path, text in permissions.rendered().items():
        assert path.read_text() == text, f"{path} is stale: run `make permissions`"


def test_every_action_declares_what_it_needs() -> None:
    for action in actions.REGISTRY.values():
        assert action.rbac or action.iam, f"{action.name} declares no permissions"
        for rule in action.rbac:
            assert set(rule.verbs) <= KNOWN_VERBS, f"{action.name}: unknown verb in {rule}"


def test_action_names_follow_the_vocabulary_form() -> None:
    for name, action in actions.REGISTRY.items():
        assert name == action.name
        target, _, verb_object = name.partition(":")
        assert target in {"k8s", "ec2", "iam", "eks", "kms"}
        assert "-" in verb_object


STAGE_ENVS = {
    "with-bucket": {"EVIDENCE_BUCKET": "evidence-bucket"},
    "without": {},
    "deployed": {"POLICY_ACCOUNT_ID": "111122223333", "POLICY_REGION": "eu-west-1",
                 "EVIDENCE_BUCKET": "evidence-bucket", "INCIDENTS_TABLE": "incidents",
                 "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:111122223333:incidents",
                 "SLACK_WEBHOOK_SECRET": "eks-responder/slack"},
}  # fmt: skip
GUARDDUTY = functions.BY_NAME["on_guardduty_finding"]


def _all_policies() -> dict[str, dict[str, Any]]:
    return {
        f"{name}/{function.name}": permissions.iam_policy(env, function)
        for name, env in STAGE_ENVS.items()
        for function in functions.FUNCTIONS
    }


def _allowed(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def test_no_wildcard_actions_and_every_action_exists() -> None:
    session = botocore.session.get_session()
    for policy in _all_policies().values():
        for statement in policy["Statement"]:
            for action in statement["Action"]:
                assert "*" not in action
                if action in IAM_ONLY_ACTIONS:
                    continue
                service, operation = action.split(":")
                model = session.get_service_model(SERVICE_MODELS[service])
                assert operation in model.operation_names, f"{action} is not an API operation"


# What parliament (with its community auditors) still reports for a deployed stage, and why each
# is inherent to an incident responder (docs/deploy.md, "IAM: what the analyser still reports").
PREFIX_LISTS = ("RESOURCE_STAR", ("ec2:getmanagedprefixlistentries",))
# SendCommand authorizes the document and the instance separately; the analyser wants the document
# in every statement, but the instance statement carries the EKS-node condition the document cannot.
SEND_COMMAND = ("RESOURCE_MISMATCH", ("{'action': 'ssm:sendcommand', 'required_format': 'arn:*:ssm:*:*:document/*'}",))
INHERENT = {
    "on_guardduty_finding": {
        ("PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:deleterolepolicy", "iam:putrolepolicy", "iam:updateaccesskey")),
        ("CREDENTIALS_EXPOSURE", ("iam:updateaccesskey",)),
        PREFIX_LISTS,
        SEND_COMMAND,
    },
    # the same playbooks as GuardDuty's own function: its findings, through Security Hub
    "on_securityhub_finding": {
        ("PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:deleterolepolicy", "iam:putrolepolicy", "iam:updateaccesskey")),
        ("CREDENTIALS_EXPOSURE", ("iam:updateaccesskey",)),
        PREFIX_LISTS,
        SEND_COMMAND,
    },
    "on_flow_logs": {PREFIX_LISTS, SEND_COMMAND},
    "on_flow_log_object": {PREFIX_LISTS, SEND_COMMAND},
    "on_kms_api_call": {
        (
            "PERMISSIONS_MANAGEMENT_ACTIONS",
            ("iam:deleterolepolicy", "iam:putrolepolicy", "kms:putkeypolicy", "kms:revokegrant"),
        )
    },
    "on_kms_key_event": {
        (
            "PERMISSIONS_MANAGEMENT_ACTIONS",
            ("iam:deleterolepolicy", "iam:putrolepolicy", "kms:putkeypolicy", "kms:revokegrant"),
        )
    },
}


def _actions_of(finding: Any) -> tuple[str, ...]:
    """The actions a finding names: in its location, or (RESOURCE_STAR) as its detail."""
    named = finding.location.get("actions") or (finding.detail if isinstance(finding.detail, list) else [])
    return tuple(sorted(str(a).lower() for a in named))


def test_parliament_with_community_auditors_finds_only_what_is_inherent() -> None:
    for function in functions.FUNCTIONS:
        policy = permissions.iam_policy(STAGE_ENVS["deployed"], function, "prod")
        analysed = parliament.analyze_policy_string(json.dumps(policy), include_community_auditors=True)
        found = {(f.issue, _actions_of(f)) for f in analysed.findings}
        assert found == INHERENT.get(function.name, set()), function.name


def test_without_an_account_id_the_policy_variable_scopes_to_the_functions_account() -> None:
    for name, policy in _all_policies().items():
        text = json.dumps(policy)
        assert "arn:aws:iam::*:" not in text, name
        assert not [r for s in policy["Statement"] for r in s["Resource"] if r.split(":")[4:5] == ["*"]], name
    analysed = parliament.analyze_policy_string(json.dumps(permissions.iam_policy({}, GUARDDUTY)))
    # parliament does not know IAM policy variables; `${aws:PrincipalAccount}` is valid in ARNs.
    assert {f.issue for f in analysed.findings} <= {"INVALID_ARN", PREFIX_LISTS[0]}


def test_each_function_holds_only_what_its_rules_reach() -> None:
    env = STAGE_ENVS["deployed"]
    policies = {f.name: _allowed(permissions.iam_policy(env, f)) for f in functions.FUNCTIONS}
    iam_writes = set(permissions.IAM_WRITES)
    for name in ("on_flow_log_object", "on_flow_logs", "on_ecr_image_scan", "on_inspector_finding",
                 "refresh_key_policies"):  # fmt: skip
        assert not policies[name] & iam_writes, name
    for name in ("on_ecr_image_scan", "on_inspector_finding", "on_flow_logs", "refresh_key_policies"):
        assert not {
            a
            for a in policies[name]
            if a.startswith("kms:") and not a.startswith(("kms:Describe", "kms:Get", "kms:List"))
        }, name
    writes = ("Put", "Create", "Update", "Delete", "Modify", "Revoke", "Enable", "Cancel", "Detach", "Set")
    bookkeeping = {"s3:PutObject", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    snapshot_writes = {a for a in policies["refresh_key_policies"] if a.split(":")[1].startswith(writes)}
    assert snapshot_writes <= bookkeeping
    assert {"iam:PutRolePolicy", "iam:UpdateAccessKey"} <= policies["on_guardduty_finding"]
    assert "kms:PutKeyPolicy" in policies["on_kms_api_call"]
    assert "kms:PutKeyPolicy" not in policies["on_guardduty_finding"]
    # Only the functions that reach a cluster are mapped into Kubernetes: never the KMS ones.
    roles = permissions.cluster_roles("prod", env)
    assert "eks-responder-prod-on_kms_api_call" not in roles
    assert "eks-responder-prod-refresh_key_policies" not in roles
    assert {"eks-responder-prod-on_guardduty_finding", "eks-responder-prod-on_flow_logs"} <= set(roles)


def test_a_flow_rule_that_revokes_a_role_gives_the_flow_function_that_write(tmp_path: Path) -> None:
    rules = {"version": 1, "rules": [
        {"name": "flow-revoke", "match": {"sources": ["flowlogs"]},
         "actions": [{"action": "iam:revoke-role-sessions"}]},
    ]}  # fmt: skip
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps(rules))
    flow = functions.BY_NAME["on_flow_logs"]
    policy = permissions.iam_policy({"RULES_FILE": str(path)}, flow)
    assert {"iam:PutRolePolicy", "iam:DeleteRolePolicy"} <= _allowed(policy)  # the revoke, and its release
    denied = {a for s in policy["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    assert sorted(denied) == ["iam:DeleteRolePolicy", "iam:PutRolePolicy"]


def _denies(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for statement in policy["Statement"]:
        if statement["Effect"] == "Deny":
            for action in statement["Action"]:
                found.setdefault(action, []).append(statement)
    return found


def test_every_iam_write_is_denied_on_own_roles_by_exact_name_and_on_tagged_principals() -> None:
    for name, policy in _all_policies().items():
        stage = "dev"  # iam_policy's default stage
        held = _allowed(policy) & set(permissions.IAM_WRITES)
        denies = _denies(policy)
        assert set(denies) == held, name
        for action, statements in denies.items():
            resources = [r for s in statements for r in s["Resource"]]
            # never a glob over names: a role anyone may create could match it and be spared
            assert not any("eks-responder-*" in r or "break" in r.lower() for r in resources), (name, action)
            own = functions.BY_NAME["on_guardduty_finding"].role_name(stage)
            if action != "iam:UpdateAccessKey":  # the responder's own identities are roles, never users
                assert any(r.endswith(f"/{own}") or f"/{own}/" in r for r in resources), (name, action)
            if action.startswith("iam:"):
                (tagged,) = [s for s in statements if "Condition" in s]
                assert tagged["Condition"] == {
                    "StringEqualsIgnoreCase": {"aws:ResourceTag/eks-responder:protected": "true"}
                }, name


def test_protected_principals_are_denied_by_their_exact_arns() -> None:
    role, user = "arn:aws:iam::111122223333:role/ops/platform-admin", "arn:aws:iam::111122223333:user/breakglass"
    env = {**STAGE_ENVS["without"], "PROTECTED_PRINCIPALS": f"{role},{user}"}
    denies = _denies(permissions.iam_policy(env, functions.BY_NAME["on_guardduty_finding"]))
    assert role in {r for s in denies["iam:PutRolePolicy"] for r in s["Resource"]}
    assert user in {r for s in denies["iam:UpdateAccessKey"] for r in s["Resource"]}
    entries = {r for s in denies["eks:DeleteAccessEntry"] for r in s["Resource"]}
    assert "arn:aws:eks:*:${aws:PrincipalAccount}:access-entry/*/role/111122223333/platform-admin/*" in entries


@pytest.mark.parametrize("value", ["*break-glass*", "break-glass-admin", "arn:aws:iam::*:role/admin",
                                   "arn:aws:iam::111122223333:role/admin-*"])  # fmt: skip
def test_a_name_glob_for_protected_principals_is_refused(value: str) -> None:
    for setting in ("PROTECTED_PRINCIPALS", "KMS_ADMIN_PRINCIPALS"):
        with pytest.raises(ConfigError, match="not an exact IAM role or user ARN"):
            Settings.from_env({setting: value})


def test_every_handler_has_a_function_entry() -> None:
    import app

    handlers = {name for name in dir(app) if name.startswith(("on_", "refresh_", "expire_"))}
    routes = {"api_handler"} if app.app.routes else set()  # Chalice runs every route in one function
    assert handlers | routes == set(functions.BY_NAME)


def test_evidence_permissions_follow_the_stage_bucket() -> None:
    with_bucket = json.dumps(permissions.iam_policy({"EVIDENCE_BUCKET": "evidence-bucket"}, GUARDDUTY))
    assert "arn:aws:s3:::evidence-bucket/*" in with_bucket
    assert "s3:" not in json.dumps(permissions.iam_policy({}, GUARDDUTY))


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(r["apiGroups"][0], r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}


def test_no_grant_for_an_action_no_rule_uses() -> None:
    granted = _granted(permissions.cluster_role_documents()[0])
    assert ("", "pods", "delete") not in granted  # k8s:delete-pod is in no default rule
    with_delete = permissions.cluster_role_documents([actions.get("k8s:delete-pod")])[0]
    assert ("", "pods", "delete") in _granted(with_delete)


def test_cluster_role_covers_every_reachable_action_rule() -> None:
    role = permissions.cluster_role_documents()[0]
    granted = _granted(role)
    for action in permissions.reachable_everywhere():
        for rule in action.rbac:
            for verb in rule.verbs:
                assert (rule.api_group, rule.resource, verb) in granted


def test_chalice_config_gives_every_function_its_own_committed_policy() -> None:
    config = json.loads((permissions.CHALICE_DIR / "config.json").read_text())
    assert config["autogen_policy"] is False
    for name, stage in config["stages"].items():
        assert stage.get("autogen_policy", False) is False
        for function in functions.FUNCTIONS:
            file = stage["lambda_functions"][function.name]["iam_policy_file"]
            assert file == f"policy-{name}-{function.name}.json"
            assert (permissions.CHALICE_DIR / file).exists(), file
    assert config["stages"]["dev"]["environment_variables"]["DRY_RUN"] == "true"


def test_notifier_permissions_follow_the_stage() -> None:
    env = {
        "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:111122223333:incidents",
        "SLACK_WEBHOOK_SECRET": "eks-responder/slack",
    }
    policy = json.dumps(permissions.iam_policy(env, GUARDDUTY))
    assert '"sns:Publish"' in policy
    assert "arn:aws:sns:eu-west-1:111122223333:incidents" in policy
    assert "secret:eks-responder/slack-*" in policy
    quiet = json.dumps(permissions.iam_policy({}, GUARDDUTY))
    assert "sns:Publish" not in quiet
    assert "secretsmanager" not in quiet
    snapshot = json.dumps(permissions.iam_policy(env, functions.BY_NAME["refresh_key_policies"]))
    assert "sns:Publish" not in snapshot


def test_the_roles_to_map_into_kubernetes_are_printed(capsys: Any) -> None:
    assert permissions.main(["--cluster-roles", "prod"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == permissions.cluster_roles("prod", permissions._stages(permissions._config())["prod"])
    assert "eks-responder-prod-on_kms_api_call" not in printed
    assert permissions.main(["--cluster-roles", "nope"]) == 2


def test_the_approval_route_holds_no_containment_permission() -> None:
    env = {**STAGE_ENVS["deployed"], "SLACK_SIGNING_SECRET": "eks-responder/slack-signing"}
    policy = permissions.iam_policy(env, functions.BY_NAME["api_handler"], "prod")
    held = _allowed(policy)
    # Recording decisions, handing approved steps on, and telling a rejection (the stage's SNS topic and
    # Slack secret): no containment, and no finding write-back even when the stage has it.
    assert held == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:GetItem",
                    "dynamodb:UpdateItem", "secretsmanager:GetSecretValue", "lambda:InvokeFunction",
                    "sns:Publish"}  # fmt: skip
    with_writeback = permissions.iam_policy({**env, "WRITEBACK_SOURCES": "guardduty"}, functions.BY_NAME["api_handler"],
                                            "prod")  # fmt: skip
    assert _allowed(with_writeback) == held
    (invoke,) = [s for s in policy["Statement"] if s["Action"] == ["lambda:InvokeFunction"]]
    assert all(":function:eks-responder-prod-on_" in r for r in invoke["Resource"])
