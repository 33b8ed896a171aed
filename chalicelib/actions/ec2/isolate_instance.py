"""ec2:isolate-instance: move every network interface of the node to a rule-less security group."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, IAMStatement, Outcome, Params, Status, Target
from chalicelib.actions.ec2.common import (
    INSTANCE_ARN,
    ISOLATED_AT_TAG,
    ISOLATION_GROUP_TAG,
    MANAGED_TAG,
    NODE_CONDITION,
    aws,
    incident_tags,
    instance,
    missing,
    terminated,
)
from chalicelib.settings import MANAGED_BY

SG_ARN = "arn:aws:ec2:{region}:{account}:security-group/*"


class IsolateInstance(Action):
    """Cut the node off the network: every ENI (primary and the VPC CNI's secondary ones) moves
    to one isolation security group per VPC, with no inbound and no outbound rule.

    The original groups of each ENI are recorded, so the change can be undone. Security groups
    are stateful: see the README for tracked connections and the other pods on the node.

    Example::

        - action: ec2:isolate-instance
    """

    name = "ec2:isolate-instance"
    writes_evidence = True
    target_kind = "instance"
    summary = "move every ENI of the node to an isolation security group with no rules"
    counts_against_instance_cap = True
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances", "ec2:DescribeSecurityGroups")),
        IAMStatement(("ec2:CreateSecurityGroup",), (SG_ARN, "arn:aws:ec2:{region}:{account}:vpc/*")),
        IAMStatement(("ec2:CreateTags",), (SG_ARN,), {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}}),
        IAMStatement(
            ("ec2:RevokeSecurityGroupEgress",),
            (SG_ARN,),
            {"StringEquals": {f"aws:ResourceTag/{ISOLATION_GROUP_TAG}": "true"}},
        ),
        IAMStatement(
            ("ec2:ModifyNetworkInterfaceAttribute",), ("arn:aws:ec2:{region}:{account}:network-interface/*", SG_ARN)
        ),
        IAMStatement(("ec2:CreateTags",), (INSTANCE_ARN,), NODE_CONDITION),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"move every network interface of instance {target} to the VPC's isolation security group (no rules)"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        ec2 = aws(ctx)
        found = instance(ctx, target)
        if found is None or terminated(found):
            return missing(target)
        vpc = str(found["VpcId"])
        interfaces = {
            str(e["NetworkInterfaceId"]): [str(g["GroupId"]) for g in e.get("Groups", [])]
            for e in found.get("NetworkInterfaces", [])
        }
        group = ec2.find_security_group(vpc, {ISOLATION_GROUP_TAG: "true"})
        done: list[str] = []
        prior: dict[str, Any] = {"network_interfaces": interfaces, "vpc": vpc}
        if group is None:
            tags = {ISOLATION_GROUP_TAG: "true", MANAGED_TAG: MANAGED_BY, "Name": "eks-responder-isolation"}
            group = ec2.create_security_group(
                vpc, f"eks-responder-isolation-{vpc}", "eks-responder: no inbound or outbound traffic", tags
            )
            if group:
                ec2.revoke_all_egress(group)  # a new group allows all outbound traffic by default
                prior["isolation_group_created"] = group
            done.append(f"created isolation group {group or '(dry run)'} in {vpc}")
        to_move = {eni: groups for eni, groups in interfaces.items() if groups != [group]}
        if not to_move and not done:
            return Outcome(Status.SKIPPED, f"instance {target} is already isolated in {group}")
        if ctx.evidence is not None and not ctx.dry_run:
            base = f"{ctx.incident.id}/instances/{target.name}"
            evidence_bundle.write(
                ctx, base, {"instance.json": evidence_bundle.as_json(found)}, {"instance": target.name}
            )
        for eni, groups in to_move.items():
            # In a dry run the group may not exist yet: prove the permission with the current groups.
            ec2.set_interface_groups(eni, [group] if group else groups)
        ec2.tag([target.name], {**incident_tags(ctx), ISOLATED_AT_TAG: ctx.now.isoformat()})
        prior["isolation_group"] = group
        moved = ", ".join(f"{eni} (was {' '.join(groups) or 'no group'})" for eni, groups in to_move.items())
        done.append(f"moved {moved} to {group or 'the isolation group'}")
        return Outcome(Status.SUCCEEDED, "; ".join(done), prior)
