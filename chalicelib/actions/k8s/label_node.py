"""k8s:label-node: mark the node as under investigation, with the incident id."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import ActionContext
from chalicelib.actions.k8s.common import LabelForInvestigation
from chalicelib.interfaces import RBACRule, Target


class LabelNode(LabelForInvestigation):
    """Label and annotate the node with the incident id.

    Example::

        - action: k8s:label-node
    """

    name = "k8s:label-node"
    target_kind = "node"
    summary = "label and annotate the node as under investigation, with the incident id"
    merges_into_target = True
    write_may_wait = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "nodes", ("get", "patch")),)

    def _get(self, ctx: ActionContext, target: Target) -> dict[str, Any] | None:
        return ctx.kube.get_node(target.name)

    def _patch(self, ctx: ActionContext, target: Target, patch: dict[str, Any]) -> None:
        ctx.kube.patch_node(target.name, patch)
