"""k8s:isolate-pod: quarantine one pod behind a deny-all NetworkPolicy."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import (
    QUARANTINE_LABEL,
    QUARANTINE_POLICY,
    Action,
    ActionContext,
    Outcome,
    Params,
    RBACRule,
    Status,
    Target,
    responder_marks,
)
from chalicelib.actions.k8s.common import changed_metadata, missing, prior_metadata
from chalicelib.settings import MANAGED_BY


def quarantine_policy(namespace: str, incident_id: str) -> dict[str, Any]:
    """Deny all ingress and egress for the pods of `namespace` that carry the quarantine label.

    Selecting by the quarantine label (not by the workload's labels) keeps the rest of the
    workload serving: only the labelled pod loses its network.
    """
    labels, annotations = responder_marks(incident_id)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": QUARANTINE_POLICY,
            "namespace": namespace,
            "labels": {**labels, "app.kubernetes.io/name": MANAGED_BY},
            "annotations": annotations,
        },
        "spec": {
            "podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


class IsolatePod(Action):
    """Label the pod quarantined and make sure a deny-all policy selects quarantined pods.

    Only CNIs that enforce NetworkPolicy cut the traffic (see the README).

    Example::

        - action: k8s:isolate-pod
    """

    name = "k8s:isolate-pod"
    target_kind = "pod"
    summary = "deny all ingress and egress of the pod (quarantine label + deny-all NetworkPolicy)"
    disrupts_workload = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("", "pods", ("get", "patch")),
        RBACRule("networking.k8s.io", "networkpolicies", ("get", "create")),
    )

    def describe(self, target: Target, params: Params) -> str:
        return (
            f"label pod {target} {QUARANTINE_LABEL}=true and ensure NetworkPolicy "
            f"{QUARANTINE_POLICY} (deny all ingress and egress) in namespace {target.namespace}"
        )

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return missing(target)
        done: list[str] = []
        prior: dict[str, Any] = {}
        policy = ctx.kube.get_network_policy(target.namespace, QUARANTINE_POLICY)
        # The policy goes first, so the pod is never labelled without the policy that isolates it.
        if policy is None:
            ctx.kube.create_network_policy(target.namespace, quarantine_policy(target.namespace, ctx.incident.id))
            done.append(f"created NetworkPolicy {target.namespace}/{QUARANTINE_POLICY}")
            prior["network_policy_created"] = f"{target.namespace}/{QUARANTINE_POLICY}"
        labels, annotations = responder_marks(ctx.incident.id, pod)
        labels[QUARANTINE_LABEL] = "true"
        if changed_metadata(pod, labels, annotations):
            prior.update(prior_metadata(pod, labels, annotations))
            ctx.kube.patch_pod(
                target.namespace, target.name, {"metadata": {"labels": labels, "annotations": annotations}}
            )
            done.append(f"labelled pod {target} {QUARANTINE_LABEL}=true")
        if not done:
            return Outcome(Status.SKIPPED, f"pod {target} is already isolated")
        return Outcome(Status.SUCCEEDED, "; ".join(done), prior)
