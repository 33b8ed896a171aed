"""k8s:label-pod: mark the pod as under investigation, with the incident id."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import ActionContext
from chalicelib.actions.k8s.common import LabelForInvestigation
from chalicelib.interfaces import RBACRule, Target


class LabelPod(LabelForInvestigation):
    """Label and annotate the pod so it can be found and is known to be under investigation.

    Example::

        - action: k8s:label-pod
    """

    name = "k8s:label-pod"
    target_kind = "pod"
    summary = "label and annotate the pod as under investigation, with the incident id"
    merges_into_target = True
    write_may_wait = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "pods", ("get", "patch")),)

    def _get(self, ctx: ActionContext, target: Target) -> dict[str, Any] | None:
        assert target.namespace is not None
        return ctx.kube.get_pod(target.namespace, target.name)

    def _patch(self, ctx: ActionContext, target: Target, patch: dict[str, Any]) -> None:
        assert target.namespace is not None
        ctx.kube.patch_pod(target.namespace, target.name, patch)
