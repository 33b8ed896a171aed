"""One write per changed object, on the local kube-apiserver: a label step's patch goes out with the
isolation's (or the cordon's), each step keeps its own prior state, and a patch whose carrier
never writes still goes out, alone, before the step is reported."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod

from chalicelib.actions.k8s.isolate_pod import IsolatePod
from chalicelib.entry import decisions
from chalicelib.executors.kube import KubeGateway
from chalicelib.executors.plans import PlanStore
from chalicelib.interfaces import INVESTIGATION_LABEL, QUARANTINE_LABEL
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"
PLAN = ("k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod", "k8s:label-node", "k8s:cordon-node")


def _labels(admin: Client, kind: Any, name: str, namespace: str | None = None) -> dict[str, str]:
    obj = admin.get(kind, name, namespace=namespace) if namespace else admin.get(kind, name)
    return dict(obj.metadata.labels or {})


def test_the_pod_and_the_node_are_each_written_once(
    cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan], sent: list[tuple[str, str]]
) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("web", node)
    found = incident(namespace=cluster.namespace, pods=(pod,))
    report = make_responder(rules_with(*PLAN), incidents_table=TABLE).handle(found, Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded"] * 5
    pod_path, node_path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}", f"/api/v1/nodes/{node}"
    assert sent.count(("PATCH", pod_path)) == 1
    assert sent.count(("PATCH", node_path)) == 1
    assert report.actions[0].detail.endswith("(sent in one request with step 3)")
    assert report.actions[3].detail.endswith("(sent in one request with step 5)")
    assert {INVESTIGATION_LABEL, QUARANTINE_LABEL} <= set(_labels(admin, Pod, pod, cluster.namespace))
    assert _labels(admin, Node, node)[INVESTIGATION_LABEL] == "true"
    assert admin.get(Node, node).spec.unschedulable

    # Each step recorded what it changed as if the label had gone first: releasing the isolation
    # leaves the pod under investigation; releasing the label then takes that mark off too.
    responder = make_responder(rules_with(*PLAN), incidents_table=TABLE)
    decisions.release(store, responder, found.id, steps=(3,), who="cli:test")
    labels = _labels(admin, Pod, pod, cluster.namespace)
    assert QUARANTINE_LABEL not in labels
    assert labels[INVESTIGATION_LABEL] == "true"
    decisions.release(store, responder, found.id, steps=(1,), who="cli:test")
    assert INVESTIGATION_LABEL not in _labels(admin, Pod, pod, cluster.namespace)


def test_a_carrier_that_fails_before_writing_leaves_the_label_to_go_alone(
    cluster: Cluster, admin: Client, make_responder: Any, monkeypatch: pytest.MonkeyPatch, sent: list[tuple[str, str]]
) -> None:
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))

    def no_policy(*_: Any) -> None:
        raise RuntimeError("admission webhook denied the NetworkPolicy")

    monkeypatch.setattr(IsolatePod, "_ensure_policy", staticmethod(no_policy))
    rules = rules_with("k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod")
    report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["succeeded", "succeeded", "failed"]
    assert report.actions[0].detail.endswith("(sent on its own: step 3 did not write it)")
    labels = _labels(admin, Pod, pod, cluster.namespace)
    assert labels[INVESTIGATION_LABEL] == "true"
    assert QUARANTINE_LABEL not in labels
    assert sent.count(("PATCH", f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}")) == 1


def test_a_held_label_that_cannot_be_written_is_reported_failed(
    cluster: Cluster, admin: Client, make_responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))

    def no_policy(*_: Any) -> None:
        raise RuntimeError("admission webhook denied the NetworkPolicy")

    def refused(*_: Any) -> None:
        raise RuntimeError("pods is forbidden: admission webhook denied the patch")

    monkeypatch.setattr(IsolatePod, "_ensure_policy", staticmethod(no_policy))
    monkeypatch.setattr(KubeGateway, "patch_pod", refused)
    rules = rules_with("k8s:label-pod", "k8s:isolate-pod")
    report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert [r.status.value for r in report.actions] == ["failed", "failed"]
    assert "but the write failed: " in report.actions[0].detail
    assert "admission webhook denied the patch" in report.actions[0].detail
    assert INVESTIGATION_LABEL not in _labels(admin, Pod, pod, cluster.namespace)


def test_a_label_is_not_held_for_a_step_that_waits_for_approval(
    cluster: Cluster, admin: Client, make_responder: Any, sent: list[tuple[str, str]]
) -> None:
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))
    rules = rules_with("k8s:label-pod", {"action": "k8s:isolate-pod", "approval": "required"})
    report = make_responder(rules, incidents_table=TABLE).handle(
        incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE
    )
    assert [r.status.value for r in report.actions] == ["succeeded", "awaiting-approval"]
    assert "sent" not in report.actions[0].detail  # written at once: the pod is marked while it waits
    assert _labels(admin, Pod, pod, cluster.namespace)[INVESTIGATION_LABEL] == "true"
    assert sent.count(("PATCH", f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}")) == 1


def test_a_held_label_goes_out_before_a_step_deletes_the_pod(
    cluster: Cluster, admin: Client, make_responder: Any, sent: list[tuple[str, str]]
) -> None:
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))
    rules = rules_with("k8s:label-pod", "k8s:delete-pod", "k8s:isolate-pod")
    report = make_responder(rules).handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
    assert report.actions[0].status.value == "succeeded"
    assert report.actions[0].detail.endswith("(sent on its own before step 2 deleted the object)")
    path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}"
    assert [m for m, p in sent if p == path and m in {"PATCH", "DELETE"}][:2] == ["PATCH", "DELETE"]
