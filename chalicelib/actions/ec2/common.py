"""What the EC2 actions share: tags, the node-only IAM condition, instance lookup."""

from __future__ import annotations

from typing import Any

from chalicelib.actions.base import ActionContext
from chalicelib.interfaces import EC2API, Outcome, Status, Target
from chalicelib.settings import MANAGED_BY

MANAGED_TAG = "managed-by"
INCIDENT_TAG = "eks-responder:incident"
CLUSTER_TAG = "eks-responder:cluster"
ISOLATION_GROUP_TAG = "eks-responder:isolation"
ISOLATED_AT_TAG = "eks-responder:isolated-at"
UNTRACKING_GROUP_TAG = "eks-responder:untracking"  # the transient all-traffic group of one isolation
PROTECTED_TAG = "eks-responder:protected"

# Writes to instances and their Auto Scaling groups are allowed only on resources EKS tags as
# cluster members (managed node groups do; tag self-managed nodes the same way).
NODE_CONDITION = {"Null": {"aws:ResourceTag/eks:cluster-name": "false"}}
INSTANCE_ARN = "arn:aws:ec2:{region}:{account}:instance/*"


def aws(ctx: ActionContext) -> EC2API:
    if ctx.aws is None:
        raise RuntimeError("no AWS access configured")
    return ctx.aws


def instance(ctx: ActionContext, target: Target) -> dict[str, Any] | None:
    key = f"instance:{target.name}"
    if key not in ctx.cache:
        ctx.cache[key] = aws(ctx).describe_instance(target.name)
    found: dict[str, Any] | None = ctx.cache[key]
    return found


def present(ctx: ActionContext, target: Target) -> dict[str, Any] | None:
    """The instance, or None when it is gone or going (an action then reports it `missing`)."""
    found = instance(ctx, target)
    return None if found is None or terminated(found) else found


def missing(target: Target) -> Outcome:
    return Outcome(Status.SKIPPED, f"instance {target} no longer exists")


def terminated(found: dict[str, Any]) -> bool:
    return (found.get("State") or {}).get("Name") in {"shutting-down", "terminated"}


def tags_of(found: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in found.get("Tags") or []}


def incident_tags(ctx: ActionContext) -> dict[str, str]:
    return {MANAGED_TAG: MANAGED_BY, INCIDENT_TAG: ctx.incident.id, CLUSTER_TAG: ctx.incident.cluster or ""}
