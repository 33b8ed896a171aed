"""Revoking compromised identities: IAM against moto, RBAC bindings and aws-auth on the real API server."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import ConfigMap
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from chalicelib import functions
from chalicelib.actions.iam.revoke_role_sessions import POLICY_NAME
from chalicelib.incident import Principal, PrincipalKind, PrincipalRole, ResourceKind
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
ACCOUNT = "123456789012"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def _with(*principals: Principal, **changes: Any) -> Any:
    found = incident(kind=ResourceKind.CLUSTER, type_="CredentialAccess:Kubernetes/MaliciousIPCaller")
    return replace(found, principals=principals, **changes)


def _role(iam: Any, name: str, path: str = "/") -> str:
    return str(iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"])


def _policy(iam: Any, role: str) -> dict[str, Any]:
    document = iam.get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
    return dict(json.loads(document) if isinstance(document, str) else document)


def test_revoke_role_sessions_lands_exactly_the_deny(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    arn = _role(iam, "developer")
    found = _with(Principal(PrincipalKind.IAM_ROLE, "developer", arn))
    responder = make_responder(rules_with("iam:revoke-role-sessions"))
    report = responder.handle(found, Mode.LIVE)
    assert report.actions[0].status.value == "succeeded", report.actions[0].detail
    document = _policy(iam, "developer")
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "*"
    assert statement["Resource"] == "*"
    cutoff = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert cutoff.endswith("Z")
    assert iam.list_role_policies(RoleName="developer")["PolicyNames"] == [POLICY_NAME]
    # The same incident again: nothing changes.
    again = responder.handle(found, Mode.LIVE)
    assert again.actions[0].status.value == "skipped"
    assert _policy(iam, "developer") == document
    # A later incident moves the cut-off in the same policy; nothing piles up.
    later = responder.handle(replace(found, id="a-later-incident"), Mode.LIVE)
    assert later.actions[0].status.value == "succeeded"
    assert later.actions[0].prior["previous_document"] == document
    assert iam.list_role_policies(RoleName="developer")["PolicyNames"] == [POLICY_NAME]
    assert "alaterincident" in _policy(iam, "developer")["Statement"][0]["Sid"].lower()


def test_a_dry_run_says_iam_writes_were_not_sent(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    arn = _role(iam, "developer")
    found = _with(Principal(PrincipalKind.IAM_ROLE, "developer", arn))
    report = make_responder(rules_with("iam:revoke-role-sessions")).handle(found, Mode.DRY_RUN)
    (result,) = report.actions
    assert result.status.value == "planned"
    # IAM has no dry run: the report must not claim the API accepted anything.
    assert "iam:PutRolePolicy not sent (the API has no dry run)" in result.detail
    assert "checked by the API" not in result.detail
    assert iam.list_role_policies(RoleName="developer")["PolicyNames"] == []


def test_deactivate_the_key_from_the_finding_or_all_keys(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    arn = iam.create_user(UserName="ci-bot")["User"]["Arn"]
    leaked, other = (iam.create_access_key(UserName="ci-bot")["AccessKey"]["AccessKeyId"] for _ in range(2))
    found = _with(Principal(PrincipalKind.IAM_USER, "ci-bot", arn, (), PrincipalRole.CREDENTIALS, leaked))

    def statuses() -> dict[str, str]:
        return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="ci-bot")["AccessKeyMetadata"]}

    report = make_responder(rules_with("iam:deactivate-access-keys")).handle(found, Mode.LIVE)
    assert report.actions[0].status.value == "succeeded"
    assert statuses() == {leaked: "Inactive", other: "Active"}
    all_keys = rules_with({"action": "iam:deactivate-access-keys", "params": {"all_keys": True}})
    make_responder(all_keys).handle(found, Mode.LIVE)
    assert statuses() == {leaked: "Inactive", other: "Inactive"}  # deactivated, never deleted


def test_a_pods_service_account_resolves_to_its_irsa_role(
    aws_session: Any, cluster: Cluster, make_responder: Any
) -> None:
    iam = aws_session.client("iam")
    arn = _role(iam, "payments-irsa")
    annotations = {"eks.amazonaws.com/role-arn": arn}
    metadata = {"name": "payments", "namespace": cluster.namespace, "annotations": annotations}
    cluster.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})
    account = f"system:serviceaccount:{cluster.namespace}:payments"
    found = _with(Principal(PrincipalKind.SERVICE_ACCOUNT, account, involved_as=PrincipalRole.WORKLOAD))
    report = make_responder(rules_with("iam:revoke-role-sessions")).handle(found, Mode.LIVE)
    assert [(r.target, r.status.value) for r in report.actions] == [(arn, "succeeded")]
    assert _policy(iam, "payments-irsa")["Statement"][0]["Effect"] == "Deny"


def test_a_nodes_instance_profile_resolves_to_its_role(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    arn = _role(iam, "eks-node-role")
    iam.create_instance_profile(InstanceProfileName="eks-node-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="eks-node-profile", RoleName="eks-node-role")
    profile = Principal(PrincipalKind.INSTANCE_PROFILE, "eks-node-profile", None, (), PrincipalRole.NODE)
    report = make_responder(rules_with("iam:revoke-role-sessions")).handle(_with(profile), Mode.LIVE)
    # Every node of the group shares the role: spared by default, and the result says why.
    assert [(r.target, r.status.value) for r in report.actions] == [(arn, "skipped")]
    assert "spared: eks-node-role is a node (EC2 instance) role" in report.actions[0].detail
    assert iam.list_role_policies(RoleName="eks-node-role")["PolicyNames"] == []
    allowed = rules_with({"action": "iam:revoke-role-sessions", "params": {"allow_node_roles": True}})
    report = make_responder(allowed).handle(_with(profile), Mode.LIVE)
    assert [(r.target, r.status.value) for r in report.actions] == [(arn, "succeeded")]


def test_a_role_ec2_assumes_is_a_node_role_whatever_the_finding_calls_it(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
    arn = iam.create_role(RoleName="nodes", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    report = make_responder(rules_with("iam:revoke-role-sessions")).handle(
        _with(Principal(PrincipalKind.IAM_ROLE, "nodes", arn)), Mode.LIVE
    )
    assert report.actions[0].status.value == "skipped"
    assert "spared" in report.actions[0].detail


def _revoke(make_responder: Any, arn: str, **settings: Any) -> Any:
    name = arn.rsplit("/", 1)[-1]
    report = make_responder(rules_with("iam:revoke-role-sessions"), **settings).handle(
        _with(Principal(PrincipalKind.IAM_ROLE, name, arn)), Mode.LIVE
    )
    return report.actions[0]


@pytest.mark.parametrize(
    "name", ["eks-responder-ci-deployer", "eks-responder-local-on_guardduty_finding-2", "payments-breakglass-bot"]
)
def test_a_role_named_like_the_responders_own_or_a_break_glass_is_revoked_like_any(
    aws_session: Any, make_responder: Any, name: str
) -> None:
    # anyone with iam:CreateRole chooses a name: immunity is never by name
    iam = aws_session.client("iam")
    result = _revoke(make_responder, _role(iam, name))
    assert result.status.value == "succeeded", result.detail
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == [POLICY_NAME]


def test_the_stages_own_function_roles_are_never_revoked(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    own = functions.BY_NAME["on_kms_api_call"].role_name("local")  # the settings' stage
    result = _revoke(make_responder, _role(iam, own))
    assert result.status.value == "skipped"
    assert "one of the responder's own roles (stage local)" in result.detail
    assert iam.list_role_policies(RoleName=own)["PolicyNames"] == []
    # another stage's role of the same account is not this responder's own
    other = functions.BY_NAME["on_kms_api_call"].role_name("prod")
    assert _revoke(make_responder, _role(iam, other)).status.value == "succeeded"


def test_a_protected_principal_is_named_by_its_exact_arn(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    listed = _role(iam, "platform-admin", path="/ops/")
    look_alike = _role(iam, "platform-admin-2")
    result = _revoke(make_responder, f"arn:aws:iam::{ACCOUNT}:role/platform-admin", protected_principals=(listed,))
    assert (result.status.value, "protected (PROTECTED_PRINCIPALS)" in result.detail) == ("skipped", True)
    assert iam.list_role_policies(RoleName="platform-admin")["PolicyNames"] == []
    assert _revoke(make_responder, look_alike, protected_principals=(listed,)).status.value == "succeeded"


def test_a_principal_tagged_protected_is_never_revoked(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    tags = [{"Key": "eks-responder:protected", "Value": "True"}]
    arn = str(iam.create_role(RoleName="break-glass", AssumeRolePolicyDocument=TRUST, Tags=tags)["Role"]["Arn"])
    result = _revoke(make_responder, arn)
    assert (result.status.value, "protected by its tag eks-responder:protected=true" in result.detail) == (
        "skipped", True)  # fmt: skip
    assert iam.list_role_policies(RoleName="break-glass")["PolicyNames"] == []
    user = iam.create_user(UserName="operator", Tags=tags)["User"]["Arn"]
    key = iam.create_access_key(UserName="operator")["AccessKey"]["AccessKeyId"]
    found = _with(Principal(PrincipalKind.IAM_USER, "operator", user, (), PrincipalRole.CALLER, key))
    report = make_responder(rules_with("iam:deactivate-access-keys")).handle(found, Mode.LIVE)
    assert (report.actions[0].status.value, "protected by its tag" in report.actions[0].detail) == ("skipped", True)
    assert [k["Status"] for k in iam.list_access_keys(UserName="operator")["AccessKeyMetadata"]] == ["Active"]


def test_the_irsa_role_of_a_protected_namespace_is_never_revoked(
    aws_session: Any, cluster: Cluster, make_responder: Any
) -> None:
    iam = aws_session.client("iam")
    arn = _role(iam, "vpc-cni")
    meta = {"name": "aws-node-t", "namespace": "kube-system", "annotations": {"eks.amazonaws.com/role-arn": arn}}
    cluster.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
    try:
        account = "system:serviceaccount:kube-system:aws-node-t"
        found = _with(Principal(PrincipalKind.SERVICE_ACCOUNT, account, involved_as=PrincipalRole.WORKLOAD))
        report = make_responder(rules_with("iam:revoke-role-sessions")).handle(found, Mode.LIVE)
        assert [(r.target, r.status.value) for r in report.actions] == [(arn, "skipped")]
        assert "protected namespace kube-system" in report.actions[0].detail
    finally:
        from lightkube.resources.core_v1 import ServiceAccount

        cluster.admin.delete(ServiceAccount, "aws-node-t", namespace="kube-system")


@pytest.mark.parametrize(
    ("arn", "reason"),
    [
        (
            "arn:aws:iam::123456789012:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
            "service-linked",
        ),
        ("arn:aws:iam::999999999999:role/developer", "not the finding's account"),
        ("arn:aws:iam::123456789012:user/moto", "the responder's own identity"),
    ],
)
def test_guardrails_never_revoke(aws_session: Any, make_responder: Any, arn: str, reason: str) -> None:
    kind = PrincipalKind.IAM_USER if ":user/" in arn else PrincipalKind.IAM_ROLE
    action = "iam:deactivate-access-keys" if kind is PrincipalKind.IAM_USER else "iam:revoke-role-sessions"
    found = _with(Principal(kind, arn.rsplit("/", 1)[-1], arn, (), PrincipalRole.CALLER, "AKIAEXAMPLE"))
    report = make_responder(rules_with(action)).handle(found, Mode.LIVE)
    assert report.actions[0].status.value == "skipped"
    assert reason in report.actions[0].detail


def test_a_service_linked_role_is_recognised_by_its_path(aws_session: Any, make_responder: Any) -> None:
    iam = aws_session.client("iam")
    _role(iam, "eks-nodegroup", path="/aws-service-role/")
    bare = f"arn:aws:iam::{ACCOUNT}:role/eks-nodegroup"  # as an assumed-role session names it: no path
    report = make_responder(rules_with("iam:revoke-role-sessions")).handle(
        _with(Principal(PrincipalKind.IAM_ROLE, "eks-nodegroup", bare)), Mode.LIVE
    )
    assert "service-linked" in report.actions[0].detail


def _binding(kind: str, name: str, role: str, subject: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


def test_dangerous_bindings_are_deleted_and_system_ones_kept(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    anonymous = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}
    default_sa = {"kind": "ServiceAccount", "name": "default", "namespace": cluster.namespace}
    cluster.create(_binding("ClusterRoleBinding", f"anon-view-{cluster.namespace}", "view", anonymous))
    cluster.create(_binding("RoleBinding", "default-admin", "cluster-admin", default_sa, cluster.namespace))
    cluster.create(_binding("RoleBinding", "default-view", "view", default_sa, cluster.namespace))
    responder = make_responder(rules_with("k8s:delete-rolebinding"))
    anonymous_finding = incident(kind=ResourceKind.CLUSTER, type_="Policy:Kubernetes/AnonymousAccessGranted")
    report = responder.handle(anonymous_finding, Mode.LIVE)
    deleted = {r.target: r for r in report.actions if r.status.value == "succeeded"}
    assert set(deleted) == {f"anon-view-{cluster.namespace}"}  # only the kind of grant the finding is about
    admin_finding = incident(kind=ResourceKind.CLUSTER, type_="Policy:Kubernetes/AdminAccessToDefaultServiceAccount")
    second = responder.handle(admin_finding, Mode.LIVE)
    assert [r.target for r in second.actions if r.status.value == "succeeded"] == [f"{cluster.namespace}/default-admin"]
    assert deleted[f"anon-view-{cluster.namespace}"].prior["deleted"]["subjects"][0]["name"] == "system:anonymous"
    with pytest.raises(ApiError):
        admin.get(ClusterRoleBinding, f"anon-view-{cluster.namespace}")
    admin.get(RoleBinding, "default-view", namespace=cluster.namespace)  # not dangerous: kept
    # Kubernetes' own binding granting discovery to system:unauthenticated is never touched.
    admin.get(ClusterRoleBinding, "system:public-info-viewer")


def test_aws_auth_mapping_is_removed_and_kept_for_undo(admin: Client, make_responder: Any, aws_session: Any) -> None:
    developer = {"rolearn": f"arn:aws:iam::{ACCOUNT}:role/teams/developer", "username": "dev", "groups": ["devs"]}
    nodes = {"rolearn": f"arn:aws:iam::{ACCOUNT}:role/eks-node", "username": "system:node:{{EC2PrivateDNSName}}",
             "groups": ["system:bootstrappers", "system:nodes"]}  # fmt: skip
    data = {"mapRoles": yaml.safe_dump([developer, nodes])}
    with contextlib.suppress(ApiError):
        admin.delete(ConfigMap, "aws-auth", namespace="kube-system")
    admin.create(
        from_dict(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "aws-auth", "namespace": "kube-system"},
                "data": data,
            }
        )
    )
    caller = Principal(PrincipalKind.IAM_ROLE, "developer", f"arn:aws:iam::{ACCOUNT}:role/developer")
    responder = make_responder(rules_with("eks:delete-access-entry"))
    report = responder.handle(_with(caller), Mode.LIVE)
    result = report.actions[0]
    assert result.status.value == "succeeded", result.detail
    assert result.prior == {"aws_auth_removed": {"mapRoles": [developer]}}
    left = yaml.safe_load(admin.get(ConfigMap, "aws-auth", namespace="kube-system").data["mapRoles"])
    assert left == [nodes]
    assert responder.handle(_with(caller), Mode.LIVE).actions[0].status.value == "skipped"


EKSCTL_AWS_AUTH = f"""# by hand and by eksctl: quotes, flow lists and comments the responder keeps as they are
- groups:
  - system:bootstrappers
  - system:nodes
  rolearn: arn:aws:iam::{ACCOUNT}:role/eks-node
  username: system:node:{{{{EC2PrivateDNSName}}}}
- rolearn: "arn:aws:iam::{ACCOUNT}:role/developer"
  username: dev
  groups: [devs]   # the team's own group
- rolearn: arn:aws:iam::{ACCOUNT}:role/ops
  username: ops
  groups:
    - ops
"""


def test_an_aws_auth_mapping_is_removed_leaving_every_other_line_as_it_was(
    admin: Client, make_responder: Any, aws_session: Any
) -> None:
    """The bounds admit only removals of whole lines: re-serialising the rest (quotes, flow lists,
    indentation) would be refused by the server, so the mapping's own lines are cut out."""
    with contextlib.suppress(ApiError):
        admin.delete(ConfigMap, "aws-auth", namespace="kube-system")
    meta = {"name": "aws-auth", "namespace": "kube-system"}
    admin.create(from_dict({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                            "data": {"mapRoles": EKSCTL_AWS_AUTH}}))  # fmt: skip
    caller = Principal(PrincipalKind.IAM_ROLE, "developer", f"arn:aws:iam::{ACCOUNT}:role/developer")
    result = make_responder(rules_with("eks:delete-access-entry")).handle(_with(caller), Mode.LIVE).actions[0]
    assert result.status.value == "succeeded", result.detail
    left = admin.get(ConfigMap, "aws-auth", namespace="kube-system").data["mapRoles"]
    lines = EKSCTL_AWS_AUTH.splitlines(keepends=True)
    assert left == "".join(lines[:6] + lines[9:])  # the developer's three lines gone, nothing else touched


def test_an_aws_auth_in_flow_style_is_reported_not_rewritten(
    admin: Client, make_responder: Any, aws_session: Any
) -> None:
    with contextlib.suppress(ApiError):
        admin.delete(ConfigMap, "aws-auth", namespace="kube-system")
    flow = f'[{{rolearn: "arn:aws:iam::{ACCOUNT}:role/developer", username: dev, groups: [devs]}}]'
    meta = {"name": "aws-auth", "namespace": "kube-system"}
    admin.create(from_dict({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"mapRoles": flow}}))
    caller = Principal(PrincipalKind.IAM_ROLE, "developer", f"arn:aws:iam::{ACCOUNT}:role/developer")
    result = make_responder(rules_with("eks:delete-access-entry")).handle(_with(caller), Mode.LIVE).actions[0]
    assert result.status.value == "failed"
    assert "remove it by hand" in result.detail
    assert admin.get(ConfigMap, "aws-auth", namespace="kube-system").data["mapRoles"] == flow
