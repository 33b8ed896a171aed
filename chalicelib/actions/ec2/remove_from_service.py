"""ec2:remove-from-service: the node stops serving, and stays for forensics."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import NODE_CONDITION, aws, missing, present
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target, checked

ASG_ARN = "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/*"
TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/*/*"


def _addresses(found: dict[str, Any]) -> set[str]:
    """The instance id and every private address of its interfaces (IP-mode targets are pods')."""
    ids = {str(found["InstanceId"])}
    for interface in found.get("NetworkInterfaces") or []:
        ids.update(str(a["PrivateIpAddress"]) for a in interface.get("PrivateIpAddresses") or [])
    return ids


class RemoveFromService(Action):
    """Take the node out of service without destroying it: put it in Standby in its Auto Scaling
    group (the group keeps its desired capacity, so it launches a replacement and never
    terminates this one), and deregister it — and, for IP targets, every address of its
    interfaces, which includes its pods' — from the load balancer target groups of its VPC.
    What was done is recorded; a release registers the targets again and leaves Standby.

    Example::

        - action: ec2:remove-from-service
    """

    name = "ec2:remove-from-service"
    contains = True
    target_kind = "instance"
    refused_by_managed_instances = "Auto Scaling standby (it belongs to no Auto Scaling group)"
    summary = "Auto Scaling Standby (a replacement starts) and deregistration from load balancer target groups"
    counts_against_instance_cap = True
    disrupts_node = True
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances", "autoscaling:DescribeAutoScalingInstances")),
        IAMStatement(("elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth")),
        IAMStatement(("autoscaling:EnterStandby",), (ASG_ARN,), NODE_CONDITION),
        IAMStatement(("elasticloadbalancing:DeregisterTargets",), (TARGET_GROUP_ARN,)),
    )
    release_iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("autoscaling:ExitStandby",), (ASG_ARN,), NODE_CONDITION),
        IAMStatement(("elasticloadbalancing:RegisterTargets",), (TARGET_GROUP_ARN,)),
    )
    releases = "registers the targets it removed again and takes the instance out of Standby"
    keeps = "the replacement the Auto Scaling group launched keeps running (scale the group in by hand)"

    def describe(self, target: Target, params: Params) -> str:
        return (f"put instance {target} in Standby in its Auto Scaling group (a replacement starts) and "
                "deregister it and its addresses from the VPC's load balancer target groups")  # fmt: skip

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        done: list[str] = []
        prior: dict[str, Any] = {"standby_in": None, "targets": []}
        group = ec2.auto_scaling_of(target.name)
        if group and group.get("LifecycleState") == "InService":
            name = str(group["AutoScalingGroupName"])
            ec2.enter_standby(name, target.name)
            prior["standby_in"] = name
            done.append(f"Standby in {name} (its desired capacity kept: a replacement starts)")
        elif group:
            done.append(f"left as {group.get('LifecycleState')} in {group['AutoScalingGroupName']}")
        registered = ec2.targets_in(str(found["VpcId"]), _addresses(found))
        if registered:
            ec2.deregister(registered)
            prior["targets"] = registered
            where = ", ".join(sorted({str(t["TargetGroupArn"]).split(":")[-1] for t in registered}))
            # Deregistered targets drain for the group's delay: listed until then, so not read back.
            done.append(f"deregistered {len(registered)} target(s) from {where} (draining; not read back)")
        if not prior["standby_in"] and not registered:
            why = "; ".join(done) or "in no Auto Scaling group"
            return Outcome(Status.SKIPPED, f"instance {target} is already out of service ({why}; no target registered)")
        claim = f"instance {target}: {'; '.join(done)}"
        if ctx.dry_run or not prior["standby_in"]:
            return Outcome(Status.SUCCEEDED, claim, prior)
        state = (ec2.auto_scaling_of(target.name) or {}).get("LifecycleState")
        return checked(claim, None if state in ("Standby", "EnteringStandby") else f"lifecycle state {state}", prior)

    reads_back = "the lifecycle state in its Auto Scaling group (deregistered targets drain: not read back)"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        done: list[str] = []
        targets = list(prior.get("targets") or [])
        if targets:
            ec2.register(targets)
            done.append(f"registered {len(targets)} target(s) again")
        name = prior.get("standby_in")
        group = ec2.auto_scaling_of(target.name)
        if name and group and group.get("LifecycleState") == "Standby":
            ec2.exit_standby(str(name), target.name)
            done.append(f"back InService in {name}")
        if not done:
            return Outcome(Status.SKIPPED, f"instance {target}: nothing was taken out of service")
        return Outcome(Status.SUCCEEDED, f"instance {target}: {'; '.join(done)}")
