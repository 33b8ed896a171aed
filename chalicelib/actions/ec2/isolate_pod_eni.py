"""ec2:isolate-pod-eni: a pod with its own branch ENI (security groups for pods) loses its network
there too, not only through a NetworkPolicy."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import aws
from chalicelib.actions.ec2.isolate_instance import (
    GROUP_IAM,
    _isolation_group,
    forensic_egress,
    move_into,
    put_back,
    rules_text,
    verify_interfaces,
)
from chalicelib.interfaces import IAMStatement, Outcome, RBACRule, Status, Target

POD_ENI_ANNOTATION = "vpc.amazonaws.com/pod-eni"
_ENI = re.compile(r"^eni-[0-9a-f]{8,17}$")


def branch_enis(pod: dict[str, Any]) -> list[str]:
    """The branch ENIs the VPC CNI gave the pod (its annotation, a JSON list); checked ids only."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_ENI_ANNOTATION)
    try:
        listed = json.loads(raw) if raw else []
    except ValueError:
        return []
    found = [str(e.get("eniId")) for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    return [e for e in found if _ENI.match(e)]


class IsolatePodEni(Action):
    """For a pod that uses security groups for pods: move its branch ENI to the VPC's rule-less
    isolation group (the same group, and the same passage through a transient all-traffic group
    that cuts tracked connections, as `ec2:isolate-instance`), verified by reading it back. The
    branch ENI's groups are recorded, so a release puts them back. A pod without a branch ENI is
    skipped: its traffic goes through its node, where `k8s:isolate-pod` cuts it.

    Example::

        - action: ec2:isolate-pod-eni
    """

    name = "ec2:isolate-pod-eni"
    contains = True
    target_kind = "pod"
    uses_aws = True
    disrupts_workload = True
    summary = "move the pod's branch ENI (security groups for pods) to the rule-less isolation group"
    rbac: ClassVar[tuple[RBACRule, ...]] = (RBACRule("", "pods", ("get",)),)
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups")),
        *GROUP_IAM,
    )
    reads_back = "the branch interface's security groups and the isolation group's rules"
    releases = "puts the branch ENI back in the security groups it had"
    keeps = "a branch ENI whose groups someone changed since (unless forced); connections cut meanwhile stay cut"

    def describe(self, target: Target, params: Params) -> str:
        return f"move the branch ENI of pod {target} (if it has one) to the VPC's isolation security group"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:  # noqa: PLR0911 - one per outcome
        assert target.namespace is not None
        pod = ctx.kube.get_pod(target.namespace, target.name)
        if pod is None:
            return Outcome(Status.SKIPPED, f"pod {target} no longer exists")
        enis = branch_enis(pod)
        if not enis:
            return Outcome(Status.SKIPPED, f"pod {target} has no branch ENI (security groups for pods not in use)")
        ec2 = aws(ctx)
        listed = ec2.network_interfaces({"network-interface-id": enis})
        # An annotation anyone who can edit the pod can write: only an ENI that carries the pod's own
        # address is its branch ENI (never the database's that a hostile annotation names).
        pod_ip = str((pod.get("status") or {}).get("podIP") or "")
        found = [e for e in listed if pod_ip and pod_ip in {str(a.get("PrivateIpAddress")) for a in
                                                             e.get("PrivateIpAddresses") or []}]  # fmt: skip
        if not found:
            why = "no longer exists" if not listed else f"does not carry the pod's address {pod_ip or '(none)'}"
            return Outcome(Status.SKIPPED, f"pod {target}: branch ENI {', '.join(enis)} {why}: not moved")
        vpc = str(found[0]["VpcId"])
        owners = {str(e.get("OwnerId")) for e in found if e.get("OwnerId")}
        groups = {str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])] for e in found}
        done: list[str] = []
        prior: dict[str, Any] = {"network_interfaces": groups, "vpc": vpc}
        allowed = forensic_egress(ctx, ec2, vpc)
        group = _isolation_group(ec2, vpc, owners, done, prior, allowed)
        to_move = {eni: was for eni, was in groups.items() if was != [group]}
        if to_move:
            move_into(ec2, vpc, to_move, group, done, untrack=True)
            moved = ", ".join(f"{eni} (was {' '.join(was)})" for eni, was in to_move.items())
            done.append(f"moved branch ENI {moved} to {group or 'the isolation group'}")
        prior["isolation_group"] = group
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, "; ".join(done) or f"pod {target}'s branch ENI is already isolated", prior)
        problem = verify_interfaces(ec2, list(groups), group, allowed)
        if problem:
            return Outcome(Status.FAILED, f"isolation of pod {target}'s branch ENI does not hold: {problem}", prior)
        if not to_move:
            return Outcome(Status.SKIPPED, f"pod {target}'s branch ENI is already isolated in {group} (verified)")
        return Outcome(Status.SUCCEEDED, "; ".join(done) + f"; verified: only in {group}, {rules_text(allowed)}", prior)

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        ec2 = aws(ctx)
        group = str(prior.get("isolation_group") or "")
        recorded = prior.get("network_interfaces") or {}
        listed = ec2.network_interfaces({"network-interface-id": list(recorded)}) if recorded else []
        current = {str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])] for e in listed}
        done, changed = put_back(ec2, recorded, current, group, force=force)
        if changed:
            note = f"left alone, changed since the isolation (force puts them back anyway): {'; '.join(changed)}"
            return Outcome(Status.SUCCEEDED if done else Status.SKIPPED, "; ".join([*done, note]))
        if not done:
            return Outcome(Status.SKIPPED, f"pod {target}: its branch ENI already has its original groups")
        return Outcome(Status.SUCCEEDED, f"pod {target}: {'; '.join(done)}")
