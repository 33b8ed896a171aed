"""k8s:cordon-node: mark the node unschedulable and taint it; never drain."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s.common import missing
from chalicelib.interfaces import (
    CORDONED_AT_ANNOTATION,
    QUARANTINE_TAINT,
    Outcome,
    RBACRule,
    Status,
    Target,
    responder_marks,
)


class CordonNode(Action):
    """Stop new pods landing on the node. Running pods stay, with their evidence.

    The NoSchedule taint tells schedulers and people why; draining is left to a human.

    Example::

        - action: k8s:cordon-node
    """

    name = "k8s:cordon-node"
    contains = True
    target_kind = "node"
    summary = "mark the node unschedulable and taint it NoSchedule (no drain)"
    merges_into_target = True
    counts_against_node_cap = True
    disrupts_node = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "nodes", ("get", "list", "patch")),)

    shared = True

    def describe(self, target: Target, params: Params) -> str:
        return f"cordon node {target} (unschedulable, taint {QUARANTINE_TAINT}:NoSchedule)"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        node = ctx.kube.get_node(target.name)
        if node is None:
            return missing(target)
        spec = node.get("spec") or {}
        taints: list[dict[str, Any]] = list(spec.get("taints") or [])
        if spec.get("unschedulable") and any(t.get("key") == QUARANTINE_TAINT for t in taints):
            return Outcome(Status.SKIPPED, f"node {target} is already cordoned", already=True)
        prior = {"unschedulable": bool(spec.get("unschedulable")), "taints": [dict(t) for t in taints]}
        labels, annotations = responder_marks(ctx.incident.id, node)
        annotations[CORDONED_AT_ANNOTATION] = ctx.now.isoformat()
        if not any(t.get("key") == QUARANTINE_TAINT for t in taints):
            taints.append(
                {"key": QUARANTINE_TAINT, "value": labels["eks-responder.io/incident"], "effect": "NoSchedule"}
            )
        patch = {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {"unschedulable": True, "taints": taints},
        }
        ctx.kube.patch_node(target.name, patch)
        if not ctx.dry_run:
            after = (ctx.kube.get_node(target.name) or {}).get("spec") or {}
            tainted = any(t.get("key") == QUARANTINE_TAINT for t in after.get("taints") or [])
            if not (after.get("unschedulable") and tainted):
                state = f"unschedulable={bool(after.get('unschedulable'))}, taint present={tainted}"
                return Outcome(Status.FAILED, f"cordon of node {target} does not hold: read back {state}", prior)
        return Outcome(
            Status.SUCCEEDED, f"cordoned node {target} and tainted it {QUARANTINE_TAINT}:NoSchedule; verified", prior
        )

    reads_back = "the node's unschedulable flag and quarantine taint"
    releases = "uncordons the node (when it was schedulable before) and removes the quarantine taint"
    keeps = "taints and cordons others added meanwhile; pods evicted or rescheduled meanwhile stay where they are"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        node = ctx.kube.get_node(target.name)
        if node is None:
            return missing(target)
        spec = node.get("spec") or {}
        taints = [t for t in spec.get("taints") or [] if t.get("key") != QUARANTINE_TAINT]
        patch: dict[str, Any] = {"spec": {"taints": taints or None}}
        if not prior.get("unschedulable"):
            patch["spec"]["unschedulable"] = None
        patch["metadata"] = {"annotations": {CORDONED_AT_ANNOTATION: None}}
        ctx.kube.patch_node(target.name, patch)
        state = "schedulable again" if not prior.get("unschedulable") else "left cordoned (it was before)"
        return Outcome(Status.SUCCEEDED, f"node {target}: quarantine taint removed; {state}")
