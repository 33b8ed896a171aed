"""Small helpers the Kubernetes actions share."""

from __future__ import annotations

from typing import Any

from chalicelib.actions.base import Outcome, Status, Target


def missing_pod(target: Target) -> Outcome:
    # Gone already: nothing to contain, and not an error (the finding may be hours old).
    return Outcome(Status.SKIPPED, f"pod {target} no longer exists")


def missing_node(target: Target) -> Outcome:
    return Outcome(Status.SKIPPED, f"node {target} no longer exists")


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
