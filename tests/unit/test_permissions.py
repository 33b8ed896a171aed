"""Permissions are data: the generated files are current, complete and valid."""

from __future__ import annotations

import json

import botocore.session
import parliament

from chalicelib import actions, permissions

KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
# IAM actions that are not API operations of the same name.
IAM_ONLY_ACTIONS = {"s3:ListBucket"}
SERVICE_MODELS = {
    "eks": "eks",
    "logs": "logs",
    "s3": "s3",
    "ec2": "ec2",
    "iam": "iam",
    "sts": "sts",
    "autoscaling": "autoscaling",
    "kms": "kms",
    "ecr": "ecr",
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


def _all_policies() -> dict[str, dict[str, object]]:
    stage_envs = {"with-bucket": {"EVIDENCE_BUCKET": "evidence-bucket"}, "without": {}}
    return {name: permissions.iam_policy(env) for name, env in stage_envs.items()}


def test_no_wildcard_actions_and_every_action_exists() -> None:
    session = botocore.session.get_session()
    for policy in _all_policies().values():
        for statement in policy["Statement"]:  # type: ignore[attr-defined]
            for action in statement["Action"]:
                assert "*" not in action
                if action in IAM_ONLY_ACTIONS:
                    continue
                service, operation = action.split(":")
                model = session.get_service_model(SERVICE_MODELS[service])
                assert operation in model.operation_names, f"{action} is not an API operation"


def test_parliament_finds_nothing_wrong() -> None:
    for name, policy in _all_policies().items():
        analysed = parliament.analyze_policy_string(json.dumps(policy))
        issues = [f.issue for f in analysed.findings]
        assert issues == [], f"{name}: {issues}"


def test_evidence_permissions_follow_the_stage_bucket() -> None:
    with_bucket = json.dumps(permissions.iam_policy({"EVIDENCE_BUCKET": "evidence-bucket"}))
    assert "arn:aws:s3:::evidence-bucket/*" in with_bucket
    assert "s3:" not in json.dumps(permissions.iam_policy({}))


def test_cluster_role_covers_every_action_rule() -> None:
    role = permissions.cluster_role_documents()[0]
    granted = {(r["apiGroups"][0], r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    for action in actions.REGISTRY.values():
        for rule in action.rbac:
            for verb in rule.verbs:
                assert (rule.api_group, rule.resource, verb) in granted


def test_chalice_config_uses_committed_policies_in_every_stage() -> None:
    config = json.loads((permissions.CHALICE_DIR / "config.json").read_text())
    assert config["autogen_policy"] is False
    for name, stage in config["stages"].items():
        assert (permissions.CHALICE_DIR / stage["iam_policy_file"]).exists(), name
        assert stage.get("autogen_policy", False) is False
    assert config["stages"]["dev"]["environment_variables"]["DRY_RUN"] == "true"


def test_notifier_permissions_follow_the_stage() -> None:
    env = {
        "SNS_TOPIC_ARN": "arn:aws:sns:eu-west-1:111122223333:incidents",
        "SLACK_WEBHOOK_SECRET": "eks-responder/slack",
    }
    policy = json.dumps(permissions.iam_policy(env))
    assert '"sns:Publish"' in policy
    assert "arn:aws:sns:eu-west-1:111122223333:incidents" in policy
    assert "secret:eks-responder/slack-*" in policy
    quiet = json.dumps(permissions.iam_policy({}))
    assert "sns:Publish" not in quiet
    assert "secretsmanager" not in quiet
