"""k8s:label-pod: mark the pod as under investigation, with the incident id."""

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
from chalicelib.actions.k8s.common import changed_metadata, missing_pod, prior_metadata


class LabelPod(Action):
    """Label and annotate the pod so it can be found and is known to be under investigation.

    Example::

        - action: k8s:label-pod
    """

    name = "k8s:label-pod"
    target_kind = "pod"
    summary = "label and annotate the pod as under investigation, with the incident id"
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "pods", ("get", "patch")),)

    def describe(self, target: Target, params: Params) -> str:
        return f"label pod {target} {INVESTIGATION_LABEL}=true with the incident id"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return missing_pod(target)
        labels, annotations = responder_marks(ctx.incident.id, pod)
        labels[INVESTIGATION_LABEL] = "true"
        if not changed_metadata(pod, labels, annotations):
            return Outcome(Status.SKIPPED, f"pod {target} is already labelled for this incident")
        prior = prior_metadata(pod, labels, annotations)
        ctx.kube.patch_pod(target.namespace, target.name, {"metadata": {"labels": labels, "annotations": annotations}})
        return Outcome(Status.SUCCEEDED, f"labelled pod {target} {INVESTIGATION_LABEL}=true", prior)
