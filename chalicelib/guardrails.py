"""Reasons not to run an action. A blocked action is reported as skipped, never dropped."""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from chalicelib.actions.base import CORDONED_AT_ANNOTATION, Action, ActionContext, Target
from chalicelib.settings import Settings


def cluster_block(cluster: str | None, protected: tuple[str, ...]) -> str | None:
    if cluster is None:
        return "the finding names no EKS cluster (for an instance: it is not tagged as a worker node)"
    if any(fnmatchcase(cluster, p) for p in protected):
        return f"cluster {cluster} is protected (PROTECTED_CLUSTERS)"
    return None


def _node(ctx: ActionContext, name: str) -> dict[str, Any] | None:
    key = f"node:{name}"
    if key not in ctx.cache:
        ctx.cache[key] = ctx.kube.get_node(name)
    node: dict[str, Any] | None = ctx.cache[key]
    return node


def _label_matches(labels: dict[str, str], selector: str) -> bool:
    key, sep, value = selector.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _cordoned_recently(ctx: ActionContext, exclude: str) -> int:
    if "cordon-count" not in ctx.cache:
        since = ctx.now - timedelta(hours=1)
        count = 0
        for node in ctx.kube.list_nodes():
            meta = node.get("metadata") or {}
            stamp = (meta.get("annotations") or {}).get(CORDONED_AT_ANNOTATION)
            if not stamp or meta.get("name") == exclude:
                continue
            try:
                when = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            if when >= since:
                count += 1
        ctx.cache["cordon-count"] = count
    counted: int = ctx.cache["cordon-count"]
    return counted


def note_cordon(ctx: ActionContext) -> None:
    """Count a cordon made in this run against the cap."""
    ctx.cache["cordon-count"] = int(ctx.cache.get("cordon-count", 0)) + 1


def static_block(action: Action, target: Target, settings: Settings) -> str | None:
    """The checks that need nothing but the target's name."""
    if target.kind == "pod":
        if action.disrupts_workload and target.namespace in settings.all_protected_namespaces:
            return f"namespace {target.namespace} is protected (PROTECTED_NAMESPACES); {action.name} never runs there"
        return None
    if target.resolved and any(fnmatchcase(target.name, p) for p in settings.protected_nodes):
        return f"node {target.name} is protected (PROTECTED_NODES)"
    return None


def block(action: Action, target: Target, ctx: ActionContext) -> str | None:
    settings = ctx.settings
    static = static_block(action, target, settings)
    if static or target.kind == "pod":
        return static
    node = _node(ctx, target.name)
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    for selector in settings.protected_node_labels:
        if _label_matches(labels, selector):
            return f"node {target.name} is protected by label {selector} (PROTECTED_NODE_LABELS)"
    if action.counts_against_node_cap and node is not None:
        already = ((node.get("metadata") or {}).get("annotations") or {}).get(CORDONED_AT_ANNOTATION)
        if not already:
            count = _cordoned_recently(ctx, target.name)
            cap = settings.max_nodes_cordoned_per_hour
            if count >= cap:
                return (
                    f"blast-radius cap reached: {count} node(s) of cluster {ctx.incident.cluster} cordoned "
                    f"in the last hour (MAX_NODES_CORDONED_PER_HOUR={cap})"
                )
    return None
