"""The generated ClusterRole is enough for every Kubernetes action, and nothing more is granted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import ConfigMap, Node, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from chalicelib import actions
from chalicelib.generate.permissions import CLUSTER_ROLE_FILE, CLUSTER_ROLE_NAME
from chalicelib.incident import Principal, PrincipalKind
from chalicelib.response.report import Mode
from devstack.stack import LocalStack
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration

# Pod actions first, the pod's deletion last: every action gets a live target.
ORDER = [
    "k8s:block-image",
    "k8s:label-pod",
    "k8s:capture-pod",
    "k8s:isolate-pod",
    "ec2:isolate-pod-eni",
    "k8s:label-node",
    "k8s:cordon-node",
    "k8s:delete-rolebinding",
    "eks:delete-access-entry",
    "k8s:delete-pod",
]


@pytest.fixture
def responder_client(local_stack: LocalStack) -> Iterator[Client]:
    with Client(KubeConfig.from_file(local_stack.responder_kubeconfig)) as client:
        yield client


def test_every_registered_action_runs_as_the_responder(
    cluster: Cluster, admin: Client, make_responder: Any, kyverno_api: None
) -> None:
    kubernetes_actions = [name for name, action in actions.REGISTRY.items() if action.rbac]
    assert sorted(ORDER) == sorted(kubernetes_actions), "add the new Kubernetes action to ORDER"
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    # Something for every action: a dangerous binding, and an aws-auth mapping for the caller.
    subject = {"kind": "ServiceAccount", "name": "default", "namespace": cluster.namespace}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}
    metadata = {"name": "default-admin", "namespace": cluster.namespace}
    binding = {"roleRef": role_ref, "subjects": [subject], "metadata": metadata}
    cluster.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", **binding})
    caller = "arn:aws:iam::123456789012:role/rbac-test-caller"
    mapping = yaml.safe_dump([{"rolearn": caller, "username": "caller", "groups": ["devs"]}])
    with contextlib.suppress(ApiError):
        admin.delete(ConfigMap, "aws-auth", namespace="kube-system")
    aws_auth = {"name": "aws-auth", "namespace": "kube-system"}
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": aws_auth, "data": {"mapRoles": mapping}})
    found = replace(
        incident(namespace=cluster.namespace, pods=(pod,)),
        principals=(Principal(PrincipalKind.IAM_ROLE, "rbac-test-caller", caller),),
        images=(f"123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{'a' * 64}",),
    )
    steps = [
        {"action": name, "params": {"grace_period_seconds": 0}} if name == "k8s:delete-pod" else name for name in ORDER
    ]
    report = make_responder(rules_with(*steps)).handle(found, Mode.LIVE)
    ran = [(r.action, r.status.value, r.detail) for r in report.actions]
    assert [a for a, _, _ in ran if a in ORDER] == [a for a, _, _ in ran]
    for name in ORDER:
        mine = [(status, detail) for action, status, detail in ran if action == name]
        assert mine, name
        if name == "ec2:isolate-pod-eni":  # it read the pod as the responder: no branch ENI to move
            assert all(status == "skipped" and "has no branch ENI" in detail for status, detail in mine), mine
            continue
        assert all(status == "succeeded" for status, _ in mine), (name, mine)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.delete(Node, "node-a"),
        lambda c: list(c.list(Secret, namespace="default")),
        lambda c: c.get(ClusterRole, CLUSTER_ROLE_NAME),
        lambda c: c.create(from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "evil"}})),
    ],
    ids=["delete-node", "list-secrets", "read-rbac", "create-node"],
)
def test_verbs_not_granted_get_a_real_403(cluster: Cluster, responder_client: Client, call: Any) -> None:
    cluster.node("node-a", "i-0aaa")
    with pytest.raises(ApiError) as err:
        call(responder_client)
    assert err.value.status.code == 403


def test_a_missing_permission_fails_the_action_visibly(cluster: Cluster, admin: Client, make_responder: Any) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    role = next(d for d in yaml.safe_load_all(CLUSTER_ROLE_FILE.read_text()) if d["kind"] == "ClusterRole")
    reduced = {**role, "rules": [r for r in role["rules"] if r["resources"] != ["networkpolicies"]]}
    admin.apply(from_dict(reduced), field_manager="tests", force=True)
    try:
        report = make_responder(rules_with("k8s:isolate-pod", "k8s:label-pod")).handle(
            incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE
        )
    finally:
        admin.apply(from_dict(role), field_manager="tests", force=True)
    isolate, label = report.actions
    assert isolate.status.value == "failed"
    assert "networkpolicies" in isolate.detail
    assert "forbidden" in isolate.detail.lower()
    assert label.status.value == "succeeded"
