"""Which running DaemonSet enforces NetworkPolicies, if any."""

from __future__ import annotations

from typing import Any

import pytest

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
