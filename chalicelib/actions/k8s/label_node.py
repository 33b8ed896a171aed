"""k8s:label-node: mark the node as under investigation."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions.base import (
    INVESTIGATION_LABEL,
    Action,
    ActionContext,
    Outcome,
    Params,
    RBACRule,
    Status,
    Target,
    responder_marks,
)
from chalicelib.actions.k8s.common import changed_metadata, missing_node, prior_metadata


class LabelNode(Action):
    """Label and annotate the node with the incident id.

    Example::

        - action: k8s:label-node
    """

    name = "k8s:label-node"
    target_kind = "node"
    summary = "label and annotate the node as under investigation, with the incident id"
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "nodes", ("get", "patch")),)

    def describe(self, target: Target, params: Params) -> str:
        return f"label node {target} {INVESTIGATION_LABEL}=true with the incident id"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        node = ctx.kube.get_node(target.name)
        if node is None:
            return missing_node(target)
        labels, annotations = responder_marks(ctx.incident.id, node)
        labels[INVESTIGATION_LABEL] = "true"
        if not changed_metadata(node, labels, annotations):
            return Outcome(Status.SKIPPED, f"node {target} is already labelled for this incident")
        prior = prior_metadata(node, labels, annotations)
        ctx.kube.patch_node(target.name, {"metadata": {"labels": labels, "annotations": annotations}})
        return Outcome(Status.SUCCEEDED, f"labelled node {target} {INVESTIGATION_LABEL}=true", prior)
