"""k8s:delete-pod: delete the pod. Destroys evidence: never in the default rules."""

from __future__ import annotations

from typing import Annotated, ClassVar

from msgspec import Meta

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s.common import missing
from chalicelib.interfaces import Outcome, RBACRule, Status, Target, checked


class DeletePodParams(Params, frozen=True):
    grace_period_seconds: Annotated[int, Meta(ge=0, le=3600)] | None = None


class DeletePod(Action):
    """Delete the pod; its controller, if any, starts a clean one. Run k8s:capture-pod first.

    Example::

        - action: k8s:delete-pod
          params: {grace_period_seconds: 0}
    """

    name = "k8s:delete-pod"
    contains = True
    keeps = "a deleted pod cannot come back; its controller starts a new one"
    target_kind = "pod"
    summary = "delete the pod (destroys evidence: capture first; never in default rules)"
    params_model = DeletePodParams
    disrupts_workload = True
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "pods", ("get", "delete")),)

    def describe(self, target: Target, params: Params) -> str:
        return f"delete pod {target}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        assert isinstance(params, DeletePodParams)
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return missing(target)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            return Outcome(Status.SKIPPED, f"pod {target} is already being deleted")
        ctx.kube.delete_pod(target.namespace, target.name, params.grace_period_seconds)
        spec = pod.get("spec") or {}
        prior = {"node": spec.get("nodeName")}
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, f"deleted pod {target}", prior)
        after = ctx.kube.get_pod(target.namespace, target.name)
        if after is None:
            return checked(f"deleted pod {target}: gone", None, prior)
        terminating = bool((after.get("metadata") or {}).get("deletionTimestamp"))
        return checked(f"deleted pod {target}: terminating", None if terminating else "no deletion under way", prior)

    reads_back = "the pod (gone, or terminating with a deletion timestamp)"
