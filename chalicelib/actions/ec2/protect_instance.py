"""ec2:protect-instance: keep the node (and its evidence) from being terminated or scaled in."""

from __future__ import annotations

from typing import Any, ClassVar

from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import INSTANCE_ARN, NODE_CONDITION, aws, missing, present
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target

ASG_ARN = "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/*"


class ProtectInstanceParams(Params, frozen=True):
    # Detaching lets the group start a replacement, while the suspect instance stays for forensics.
    detach_from_group: bool = False


class ProtectInstance(Action):
    """Termination protection, shutdown behaviour "stop", and Auto Scaling scale-in protection;
    optionally detach the instance from its group so a replacement starts. Prior values are kept.

    Example::

        - action: ec2:protect-instance
          params: {detach_from_group: false}
    """

    name = "ec2:protect-instance"
    target_kind = "instance"
    refused_by_managed_instances = "termination-protection and shutdown-behaviour changes"
    summary = "termination protection, shutdown behaviour stop, scale-in protection (or detach from the group)"
    params_model = ProtectInstanceParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances", "autoscaling:DescribeAutoScalingInstances")),
        IAMStatement(("ec2:DescribeInstanceAttribute",), (INSTANCE_ARN,)),
        IAMStatement(("ec2:ModifyInstanceAttribute",), (INSTANCE_ARN,), NODE_CONDITION),
        IAMStatement(("autoscaling:SetInstanceProtection", "autoscaling:DetachInstances"), (ASG_ARN,), NODE_CONDITION),
    )

    def describe(self, target: Target, params: Params) -> str:
        assert isinstance(params, ProtectInstanceParams)
        asg = "detach it from its Auto Scaling group" if params.detach_from_group else "protect it from scale-in"
        return f"turn on termination protection for instance {target}, set shutdown behaviour to stop, {asg}"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, ProtectInstanceParams)
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        termination = bool(ec2.instance_attribute(target.name, "disableApiTermination"))
        shutdown = ec2.instance_attribute(target.name, "instanceInitiatedShutdownBehavior")
        group = ec2.auto_scaling_of(target.name)
        prior: dict[str, Any] = {
            "disableApiTermination": termination,
            "instanceInitiatedShutdownBehavior": shutdown,
            "auto_scaling_group": group["AutoScalingGroupName"] if group else None,
            "protected_from_scale_in": bool(group and group.get("ProtectedFromScaleIn")),
        }
        done: list[str] = []
        if not termination:
            ec2.set_instance_attribute(target.name, "disableApiTermination", True)
            done.append("termination protection on")
        if shutdown != "stop":
            ec2.set_instance_attribute(target.name, "instanceInitiatedShutdownBehavior", "stop")
            done.append("shutdown behaviour stop")
        if group:
            name = str(group["AutoScalingGroupName"])
            if params.detach_from_group:
                ec2.detach_from_group(name, target.name)
                done.append(f"detached from {name} (a replacement will start)")
            elif not group.get("ProtectedFromScaleIn"):
                ec2.set_scale_in_protection(name, target.name, protected=True)
                done.append(f"scale-in protection in {name}")
        if not done:
            return Outcome(Status.SKIPPED, f"instance {target} is already protected")
        if ctx.dry_run:
            return Outcome(Status.SUCCEEDED, f"instance {target}: {', '.join(done)}", prior)
        wrong = self._not_held(ec2, target.name, params, group)
        if wrong:
            # What was claimed is not so: a failed step, with its prior state kept for the release.
            said = f"instance {target}: {', '.join(done)} requested, but read back {', '.join(wrong)}"
            return Outcome(Status.FAILED, said, prior)
        return Outcome(Status.SUCCEEDED, f"instance {target}: {', '.join(done)} (read back)", prior)

    reads_back = "termination protection, shutdown behaviour, and scale-in protection or group membership"

    @staticmethod
    def _not_held(ec2: Any, instance: str, params: ProtectInstanceParams, group: dict[str, Any] | None) -> list[str]:
        wrong: list[str] = []
        if not ec2.instance_attribute(instance, "disableApiTermination"):
            wrong.append("termination protection off")
        shutdown = ec2.instance_attribute(instance, "instanceInitiatedShutdownBehavior")
        if shutdown != "stop":
            wrong.append(f"shutdown behaviour {shutdown}")
        if group:
            now = ec2.auto_scaling_of(instance)
            name = group["AutoScalingGroupName"]
            if params.detach_from_group and now and now.get("AutoScalingGroupName") == name:
                wrong.append(f"still in {name}")
            elif not params.detach_from_group and not (now and now.get("ProtectedFromScaleIn")):
                wrong.append(f"not protected from scale-in in {name}")
        return wrong

    releases = "turns termination protection, shutdown behaviour and scale-in protection back to what they were"
    keeps = "an instance detached from its Auto Scaling group stays detached (its replacement runs)"

    def release(self, ctx: ActionContext, target: Target, prior: dict[str, Any], *, force: bool) -> Outcome:
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        done: list[str] = []
        if not prior.get("disableApiTermination"):
            ec2.set_instance_attribute(target.name, "disableApiTermination", False)
            done.append("termination protection off")
        before = prior.get("instanceInitiatedShutdownBehavior")
        if before and before != "stop":
            ec2.set_instance_attribute(target.name, "instanceInitiatedShutdownBehavior", before)
            done.append(f"shutdown behaviour {before}")
        group = prior.get("auto_scaling_group")
        if group and not prior.get("protected_from_scale_in") and ec2.auto_scaling_of(target.name):
            ec2.set_scale_in_protection(str(group), target.name, protected=False)
            done.append(f"scale-in protection off in {group}")
        if not done:
            return Outcome(Status.SKIPPED, f"instance {target} was protected before: nothing to turn off")
        return Outcome(Status.SUCCEEDED, f"instance {target}: {', '.join(done)}")
