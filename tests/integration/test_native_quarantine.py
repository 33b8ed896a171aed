"""Where Cilium or Calico enforces, k8s:isolate-pod writes the engine's own deny policy too (its
deny beats any allow, cluster-wide ones included), reads it back, and a release removes it.

The engines' APIs are served by CustomResourceDefinitions (no engine runs on the local API
server); a running engine is its DaemonSet with ready pods, as enforcement.py recognises it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.types import PatchType

from chalicelib.actions.k8s import enforcement
from chalicelib.entry import decisions
from chalicelib.executors.plans import PlanStore
from chalicelib.interfaces import QUARANTINE_POLICY
from chalicelib.response.plan import Plan
from chalicelib.response.report import Mode
from devstack.seed import until_established
from tests.integration.conftest import Cluster, incident, rules_with

pytestmark = pytest.mark.integration
TABLE = "eks-responder-incidents"

ENGINES = {
    # engine: (DaemonSet, group, version, kind, plural)
    "Cilium": ("cilium", "cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"),
    "Calico": ("calico-node", "projectcalico.org", "v3", "NetworkPolicy", "networkpolicies"),
}


def _crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    }  # fmt: skip


@contextlib.contextmanager
def _engine(admin: Client, namespace: str, engine: str, *, api: bool = True) -> Iterator[Any]:
    """The engine running (its DaemonSet, ready), and its policy API served unless `api` is false."""
    daemonset, group, version, kind, plural = ENGINES[engine]
    crd = f"{plural}.{group}"
    if api:
        admin.apply(from_dict(_crd(group, version, kind, plural)), field_manager="test", force=True)
        until_established(admin, crd)
    labels = {"k8s-app": daemonset}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "agent", "image": daemonset}]}}
    admin.create(from_dict({"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "metadata": {"name": daemonset, "namespace": namespace},
                            "spec": {"selector": {"matchLabels": labels}, "template": template}}))  # fmt: skip
    status = {"status": {"numberReady": 1, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                         "numberMisscheduled": 0}}  # fmt: skip
    admin.patch(DaemonSet.Status, daemonset, status, namespace=namespace, patch_type=PatchType.MERGE)
    try:
        yield create_namespaced_resource(group, version, kind, plural)
    finally:
        admin.delete(DaemonSet, daemonset, namespace=namespace)
        if api:
            with contextlib.suppress(ApiError):
                admin.delete(CustomResourceDefinition, crd)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_engines_own_deny_policy_is_written_verified_and_released(
    engine: str, cluster: Cluster, admin: Client, make_responder: Any, store: PlanStore[Plan]
) -> None:
    node = cluster.node("node-a", "i-0aaa")
    pod = cluster.pod("a", node)
    with _engine(admin, cluster.namespace, engine) as resource:
        # WHEN a pod is isolated where the engine runs
        responder = make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE)
        found = incident(namespace=cluster.namespace, pods=(pod,))
        report = responder.handle(found, Mode.LIVE)
        (result,) = report.actions
        # THEN the engine's deny-all for quarantined pods is there, exactly as written, and said
        assert result.status.value == "succeeded", result.detail
        assert f"created {ENGINES[engine][3]} {cluster.namespace}/{QUARANTINE_POLICY}" in result.detail
        assert result.detail.endswith(f"enforced by {engine}")
        written = admin.get(resource, QUARANTINE_POLICY, namespace=cluster.namespace)
        assert written.to_dict()["spec"] == enforcement.native_spec(engine)
        # WHEN someone loosens it, the next isolation in the namespace repairs it
        loosened = ({"ingressDeny": None, "egressDeny": None} if engine == "Cilium"
                    else {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})  # fmt: skip
        admin.patch(resource, QUARANTINE_POLICY, {"spec": loosened}, namespace=cluster.namespace,
                    patch_type=PatchType.MERGE)  # fmt: skip
        second = incident(namespace=cluster.namespace, pods=(cluster.pod("b", node),))
        isolating = make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE)
        (again,) = isolating.handle(second, Mode.LIVE).actions
        assert again.status.value == "succeeded", again.detail
        assert "now deny-all" in again.detail
        assert admin.get(resource, QUARANTINE_POLICY, namespace=cluster.namespace).to_dict()["spec"] == (
            enforcement.native_spec(engine)
        )
        # WHEN both pods are released, the engine's policy goes with the last (as the NetworkPolicy does)
        for released in (second, found):
            decisions.release(store, make_responder(rules_with("k8s:isolate-pod"), incidents_table=TABLE),
                              released.id, steps=None, who="cli:test")  # fmt: skip
            exists = [o.metadata.name for o in admin.list(resource, namespace=cluster.namespace)]
            assert exists == ([QUARANTINE_POLICY] if released is second else []), released.id


def test_an_engine_without_its_api_is_said_and_the_network_policy_still_isolates(
    cluster: Cluster, admin: Client, make_responder: Any
) -> None:
    pod = cluster.pod("a", cluster.node("node-a", "i-0aaa"))
    with _engine(admin, cluster.namespace, "Calico", api=False):
        (result,) = (
            make_responder(rules_with("k8s:isolate-pod"))
            .handle(incident(namespace=cluster.namespace, pods=(pod,)), Mode.LIVE)
            .actions
        )
    assert result.status.value == "succeeded", result.detail
    assert "its policy API projectcalico.org/v3 is not served" in result.detail
    assert result.detail.endswith("enforced by Calico")
