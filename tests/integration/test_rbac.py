"""The generated ClusterRole is enough for every Kubernetes action, and nothing more is granted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Node, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from chalicelib import actions
from chalicelib.permissions import CLUSTER_ROLE_FILE, CLUSTER_ROLE_NAME
from chalicelib.responder import Mode
from devstack.stack import LocalStack
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration

# Pod actions first, the pod's deletion last: every action gets a live target.
ORDER = ["k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod", "k8s:label-node", "k8s:cordon-node", "k8s:delete-pod"]


@pytest.fixture
def responder_client(local_stack: LocalStack) -> Iterator[Client]:
    with Client(KubeConfig.from_file(local_stack.responder_kubeconfig)) as client:
        yield client


def test_every_registered_action_runs_as_the_responder(cluster: Cluster, make_responder: Any) -> None:
    kubernetes_actions = [name for name, action in actions.REGISTRY.items() if action.rbac]
    assert sorted(ORDER) == sorted(kubernetes_actions), "add the new Kubernetes action to ORDER"
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("api", node)
    steps = [
        {"action": name, "params": {"grace_period_seconds": 0}} if name == "k8s:delete-pod" else name for name in ORDER
    ]
    report = make_responder(rules_with(*steps)).handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert [(r.action, r.status.value) for r in report.actions] == [(name, "succeeded") for name in ORDER], [
        r.detail for r in report.actions
    ]


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
