"""Whether a cluster enforces NetworkPolicies at all: a deny-all policy is only words otherwise.

Kubernetes stores NetworkPolicies whatever the network plugin; only an engine that implements
them cuts traffic. The engines are recognised by their DaemonSets (running, not just installed):
the VPC CNI's network policy agent (`aws-node`, container `aws-network-policy-agent` started with
`--enable-network-policy=true`, which the EKS add-on's `enableNetworkPolicy` sets), Calico,
Cilium, Antrea, kube-router and Weave Net.
"""

from __future__ import annotations

from typing import Any

from chalicelib.actions.base import ActionContext
from chalicelib.interfaces import QUARANTINE_LABEL, QUARANTINE_POLICY, responder_marks
from chalicelib.settings import MANAGED_BY

_ENGINES = {"calico-node": "Calico", "cilium": "Cilium", "antrea-agent": "Antrea", "kube-router": "kube-router",
            "weave-net": "Weave Net"}  # fmt: skip
_VPC_CNI_AGENT = "aws-network-policy-agent"
LOOKED_FOR = "the VPC CNI network policy agent (enableNetworkPolicy), Calico, Cilium, Antrea, kube-router, Weave Net"


def _running(daemonset: dict[str, Any]) -> bool:
    return int((daemonset.get("status") or {}).get("numberReady") or 0) > 0


def _vpc_cni_enforces(daemonset: dict[str, Any]) -> bool:
    containers = ((((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    for container in containers:
        if container.get("name") == _VPC_CNI_AGENT:
            args = [str(a) for a in container.get("args") or []]
            return "--enable-network-policy=true" in args
    return False


def engine_of(daemonsets: list[dict[str, Any]]) -> str | None:
    """The running engine that enforces NetworkPolicies, by its DaemonSet; None when there is none."""
    for daemonset in daemonsets:
        name = str((daemonset.get("metadata") or {}).get("name") or "")
        if not _running(daemonset):
            continue
        if name in _ENGINES:
            return _ENGINES[name]
        if name == "aws-node" and _vpc_cni_enforces(daemonset):
            return "the VPC CNI network policy agent"
    return None


def check(ctx: ActionContext) -> tuple[str | None, str | None]:
    """(the engine, or None; why not known) for the incident's cluster, looked up once per incident."""
    if "np-engine" not in ctx.cache:
        try:
            ctx.cache["np-engine"] = (engine_of(ctx.kube.list_daemonsets()), None)
        except Exception as exc:  # noqa: BLE001 - unknown is said, never a reason to leave a pod open
            ctx.cache["np-engine"] = (None, f"{type(exc).__name__}: {str(exc)[:200]}")
    found: tuple[str | None, str | None] = ctx.cache["np-engine"]
    return found


def verdict(ctx: ActionContext) -> str:
    """The sentence a pod isolation's result ends with; says it loudly (and once in the notes) when
    nothing would enforce the policy."""
    engine, unknown = check(ctx)
    cluster = ctx.incident.cluster or "-"
    if engine:
        return f"enforced by {engine}"
    if unknown:
        said = f"enforcement unknown: cannot list DaemonSets in cluster {cluster} ({unknown})"
    else:
        said = (f"NOT ENFORCED: no NetworkPolicy engine runs in cluster {cluster} (looked for {LOOKED_FOR}); "
                "the policy is in place but traffic is not cut")  # fmt: skip
    note = f"isolation declared but not enforced in cluster {cluster}: turn on the VPC CNI's network policies"
    if engine is None and not unknown and note not in ctx.notes:
        ctx.notes.append(note)
    return said


# The engines' own deny rules win over every allow, their cluster-wide policies' included, which a
# NetworkPolicy cannot: where one runs, isolation writes its deny policy beside the NetworkPolicy.
CILIUM_POLICY = ("cilium.io/v2", "CiliumNetworkPolicy")
CALICO_POLICY = ("projectcalico.org/v3", "NetworkPolicy")  # Calico's API server (not its raw CRDs)
NATIVE_KINDS = {"Cilium": CILIUM_POLICY, "Calico": CALICO_POLICY}


def native_spec(engine: str) -> dict[str, Any]:
    if engine == "Cilium":
        return {
            "endpointSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}},
            "ingressDeny": [{"fromEntities": ["all"]}],
            "egressDeny": [{"toEntities": ["all"]}],
        }
    # Calico: order 0 is evaluated first in its tier, and Deny ends the evaluation.
    return {
        "order": 0,
        "selector": f"{QUARANTINE_LABEL} == 'true'",
        "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Deny"}],
        "egress": [{"action": "Deny"}],
    }


def native_policy(engine: str | None, namespace: str, incident_id: str) -> dict[str, Any] | None:
    """The engine's own deny-all for quarantined pods of `namespace` (None for other engines)."""
    if engine not in NATIVE_KINDS:
        return None
    api_version, kind = NATIVE_KINDS[engine]
    labels, annotations = responder_marks(incident_id)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": QUARANTINE_POLICY, "namespace": namespace,
                     "labels": {**labels, "app.kubernetes.io/name": MANAGED_BY}, "annotations": annotations},
        "spec": native_spec(engine),
    }  # fmt: skip
