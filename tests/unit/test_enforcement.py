"""Which running DaemonSet enforces NetworkPolicies, if any."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.actions.k8s import enforcement
from chalicelib.actions.k8s.enforcement import engine_of


def _daemonset(name: str, ready: int = 3, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec = {"template": {"spec": {"containers": containers or [{"name": name}]}}}
    return {"metadata": {"name": name}, "spec": spec, "status": {"numberReady": ready}}


AWS_NODE = [{"name": "aws-node"}, {"name": "aws-eks-nodeagent"}]


@pytest.mark.parametrize(
    ("daemonsets", "engine"),
    [
        ([_daemonset("aws-node", containers=AWS_NODE)], None),  # the VPC CNI alone does not enforce
        (
            [
                _daemonset(
                    "aws-node",
                    containers=[
                        *AWS_NODE,
                        {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=false"]},
                    ],
                )
            ],
            None,
        ),
        (
            [
                _daemonset(
                    "aws-node",
                    containers=[
                        *AWS_NODE,
                        {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=true"]},
                    ],
                )
            ],
            "the VPC CNI network policy agent",
        ),
        ([_daemonset("aws-node", containers=AWS_NODE), _daemonset("calico-node")], "Calico"),
        ([_daemonset("cilium")], "Cilium"),
        ([_daemonset("cilium", ready=0)], None),  # installed is not running
        ([_daemonset("kube-proxy"), _daemonset("fluent-bit")], None),
    ],
)
def test_the_engine_is_the_one_running(daemonsets: list[dict[str, Any]], engine: str | None) -> None:
    assert engine_of(daemonsets) == engine


def test_only_cilium_and_calico_get_a_policy_of_their_own() -> None:
    from chalicelib.interfaces import QUARANTINE_LABEL, QUARANTINE_POLICY

    cilium = enforcement.native_policy("Cilium", "payments", "i1")
    calico = enforcement.native_policy("Calico", "payments", "i1")
    assert cilium is not None
    assert calico is not None
    assert (cilium["apiVersion"], cilium["kind"]) == ("cilium.io/v2", "CiliumNetworkPolicy")
    assert (calico["apiVersion"], calico["kind"]) == ("projectcalico.org/v3", "NetworkPolicy")
    for policy in (cilium, calico):
        assert policy["metadata"]["name"] == QUARANTINE_POLICY
        assert policy["metadata"]["namespace"] == "payments"
    # both deny everything, both ways, for the quarantined pods only
    assert cilium["spec"]["endpointSelector"] == {"matchLabels": {QUARANTINE_LABEL: "true"}}
    assert cilium["spec"]["ingressDeny"] == [{"fromEntities": ["all"]}]
    assert cilium["spec"]["egressDeny"] == [{"toEntities": ["all"]}]
    assert "ingress" not in cilium["spec"]
    assert calico["spec"]["selector"] == f"{QUARANTINE_LABEL} == 'true'"
    assert calico["spec"]["ingress"] == calico["spec"]["egress"] == [{"action": "Deny"}]
    assert calico["spec"]["order"] == 0
    for engine in ("the VPC CNI network policy agent", "Antrea", None):
        assert enforcement.native_policy(engine, "payments", "i1") is None
