"""k8s:capture-pod: the pod's manifest, its events and log tails, with a SHA-256 manifest."""

from __future__ import annotations

from typing import Annotated, ClassVar

from msgspec import Meta

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s.common import missing
from chalicelib.interfaces import Outcome, RBACRule, Status, Target


class CapturePodParams(Params, frozen=True):
    tail_lines: Annotated[int, Meta(ge=1, le=100_000)] | None = None


class CapturePod(Action):
    """Write the pod's evidence to the evidence store (S3 in AWS, a folder locally).

    Files: `pod.json`, `events.json`, `logs/<container>.log` (the last lines of each container)
    and `MANIFEST.json` with the SHA-256 of each, who captured them and when.

    Example::

        - action: k8s:capture-pod
          params: {tail_lines: 500}
    """

    name = "k8s:capture-pod"
    keeps = "captured evidence is never deleted by a release"
    writes_evidence = True
    target_kind = "pod"
    summary = "save the pod's manifest, events and log tails to the evidence store, with SHA-256 hashes"
    params_model = CapturePodParams
    rbac: ClassVar[tuple[RBACRule, ...]] = (
        RBACRule("", "pods", ("get",)),
        RBACRule("", "pods/log", ("get",)),
        RBACRule("", "events", ("list",)),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"capture manifest, events and log tails of pod {target} to the evidence store"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert target.namespace is not None
        assert isinstance(params, CapturePodParams)
        if ctx.evidence is None:
            return Outcome(Status.SKIPPED, "no evidence store configured (set EVIDENCE_BUCKET or EVIDENCE_DIR)")
        base = f"{evidence_bundle.incident_prefix(ctx.incident)}/pods/{target.namespace}/{target.name}"
        if ctx.evidence.exists(f"{base}/{evidence_bundle.MANIFEST}"):
            return Outcome(Status.SKIPPED, f"pod {target} already captured at {ctx.evidence.location(base)}")
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return missing(target)
        if ctx.dry_run:
            # Reading is harmless, but a dry run writes nothing anywhere.
            return Outcome(Status.PLANNED, f"would capture pod {target} to {ctx.evidence.location(base)}")
        files = {
            "pod.json": evidence_bundle.as_json(pod),
            "events.json": evidence_bundle.as_json(ctx.kube.pod_events(target.namespace, target.name)),
        }
        tail = params.tail_lines or ctx.settings.log_tail_lines
        spec = pod.get("spec") or {}
        containers = [c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        for container in filter(None, containers):
            try:
                text = ctx.kube.pod_log(target.namespace, target.name, str(container), tail)
            except Exception as exc:  # noqa: BLE001 - a missing log is recorded, not fatal
                text = f"[log unavailable: {exc}]\n"
            files[f"logs/{container}.log"] = text.encode()
        where = evidence_bundle.write(ctx, base, files, {"pod": str(target), "node": spec.get("nodeName")})
        return Outcome(Status.SUCCEEDED, f"captured {len(files)} files of pod {target} to {where}", {"location": where})
