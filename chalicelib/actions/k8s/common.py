"""Small helpers the Kubernetes actions share."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.k8s import compute
from chalicelib.interfaces import (
    INCIDENT_ANNOTATION,
    INVESTIGATION_LABEL,
    Outcome,
    Status,
    Target,
    checked,
    responder_marks,
)


def missing(target: Target) -> Outcome:
    # Gone already: nothing to contain, and not an error (the finding may be hours old).
    return Outcome(Status.SKIPPED, f"{target.kind} {target} no longer exists")


def changed_metadata(obj: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]) -> bool:
    """True when setting these labels and annotations would change the object."""
    meta = obj.get("metadata") or {}
    have_labels = meta.get("labels") or {}
    have_annotations = meta.get("annotations") or {}
    return any(have_labels.get(k) != v for k, v in labels.items()) or any(
        have_annotations.get(k) != v for k, v in annotations.items()
    )


def prior_metadata(obj: dict[str, Any], labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """The values these keys had before (None = absent): what an undo restores."""
    meta = obj.get("metadata") or {}
    have_labels = meta.get("labels") or {}
    have_annotations = meta.get("annotations") or {}
    return {
        "labels": {k: have_labels.get(k) for k in labels},
        "annotations": {k: have_annotations.get(k) for k in annotations},
    }


def restore_metadata(obj: dict[str, Any], prior: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that gives back each key its prior value (None removes it), for the keys the
    object still carries with a different value."""
    meta = obj.get("metadata") or {}
    patch: dict[str, dict[str, Any]] = {"labels": {}, "annotations": {}}
    for part in ("labels", "annotations"):
        have = meta.get(part) or {}
        for key, before in (prior.get(part) or {}).items():
            if have.get(key) != before:
                patch[part][key] = before
    return {"metadata": patch}


def _marks_missing(obj: dict[str, Any] | None, incident_id: str, kept: dict[str, str]) -> str | None:
    """What of this incident's marks the object lacks (another incident may add its own meanwhile)."""
    if obj is None:
        return "the object is gone"
    meta = obj.get("metadata") or {}
    wrong = [f"annotation {k} is not {v}" for k, v in kept.items() if (meta.get("annotations") or {}).get(k) != v]
    if (meta.get("labels") or {}).get(INVESTIGATION_LABEL) != "true":
        wrong.append(f"label {INVESTIGATION_LABEL} not set")
    if incident_id not in ((meta.get("annotations") or {}).get(INCIDENT_ANNOTATION) or "").split(","):
        wrong.append(f"annotation {INCIDENT_ANNOTATION} without incident {incident_id}")
    return "; ".join(wrong) or None


class LabelForInvestigation(Action):
    """Label and annotate a pod or node as under investigation, with the incident id."""

    @abstractmethod
    def _get(self, ctx: ActionContext, target: Target) -> dict[str, Any] | None: ...

    @abstractmethod
    def _patch(self, ctx: ActionContext, target: Target, patch: dict[str, Any]) -> None: ...

    def describe(self, target: Target, params: Params) -> str:
        return (
            f"label {target.kind} {target} {INVESTIGATION_LABEL}=true with the incident id (kept from its autoscaler)"
        )

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        obj = self._get(ctx, target)
        if obj is None:
            return missing(target)
        labels, annotations = responder_marks(ctx.incident.id, obj)
        labels[INVESTIGATION_LABEL] = "true"
        # The evidence stays: the node's autoscaler must not remove the node (or, for a pod, its node).
        kept = compute.keep_in_place(target.attributes.get("compute" if target.kind == "node" else "node_compute"),
                                     target.kind)  # fmt: skip
        annotations.update(kept)
        if not changed_metadata(obj, labels, annotations):
            return Outcome(Status.SKIPPED, f"{target.kind} {target} is already labelled for this incident")
        prior = prior_metadata(obj, labels, annotations)
        self._patch(ctx, target, {"metadata": {"labels": labels, "annotations": annotations}})
        claim = f"labelled {target.kind} {target} {INVESTIGATION_LABEL}=true"
        if kept:
            claim += ", kept from its autoscaler (" + ", ".join(f"{k}={v}" for k, v in kept.items()) + ")"
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, claim, prior)
        # The server's answer to the patch (or, while the patch is held for a later step's write, the
        # object as that write will leave it: the responder confirms the step once it is sent).
        after = self._get(ctx, target)
        return checked(claim, _marks_missing(after, ctx.incident.id, kept), prior)

    reads_back = "the labels and annotations, from the API server's answer to the patch"

    releases = "puts the labels and annotations back as they were (removes the ones it added)"
    keeps = "nothing"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        obj = self._get(ctx, target)
        if obj is None:
            return missing(target)
        restore = restore_metadata(obj, prior)
        if not restore["metadata"]["labels"] and not restore["metadata"]["annotations"]:
            return Outcome(Status.SKIPPED, f"{target.kind} {target} carries none of the marks any more")
        self._patch(ctx, target, restore)
        return Outcome(Status.SUCCEEDED, f"{target.kind} {target}: labels and annotations put back")
