"""ec2:snapshot-volumes: snapshot every EBS volume of the node, tagged with the incident."""

from __future__ import annotations

from typing import ClassVar

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2.common import INCIDENT_TAG, aws, incident_tags, instance, missing
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target

SNAPSHOT_ARN = "arn:aws:ec2:{region}::snapshot/*"


class SnapshotVolumes(Action):
    """Snapshot every attached EBS volume before anything else can change it.

    Each snapshot is tagged with the incident id, instance id, device name and finding type; one
    snapshot per volume per incident, however often the finding is replayed.

    Example::

        - action: ec2:snapshot-volumes
    """

    name = "ec2:snapshot-volumes"
    keeps = "snapshots are evidence: a release never deletes them"
    writes_evidence = True
    target_kind = "instance"
    summary = "snapshot every attached EBS volume, tagged with the incident, instance, device and finding"
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances", "ec2:DescribeSnapshots")),
        IAMStatement(("ec2:CreateSnapshot",), ("arn:aws:ec2:{region}:{account}:volume/*", SNAPSHOT_ARN)),
        IAMStatement(("ec2:CreateTags",), (SNAPSHOT_ARN,), {"StringEquals": {"ec2:CreateAction": "CreateSnapshot"}}),
    )

    def describe(self, target: Target, params: Params) -> str:
        return f"snapshot every EBS volume of instance {target}, tagged with the incident id"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        ec2 = aws(ctx)
        found = instance(ctx, target)
        if found is None:
            return missing(target)
        volumes = [
            (str(m["DeviceName"]), str(m["Ebs"]["VolumeId"]))
            for m in found.get("BlockDeviceMappings", [])
            if m.get("Ebs")
        ]
        if not volumes:
            return Outcome(Status.SKIPPED, f"instance {target} has no EBS volume")
        snapshots: dict[str, str] = {}
        created: list[str] = []
        for device, volume in volumes:
            existing = ec2.snapshots_of(volume, {INCIDENT_TAG: ctx.incident.id})
            if existing:
                snapshots[volume] = str(existing[0]["SnapshotId"])
                continue
            tags = {
                **incident_tags(ctx),
                "eks-responder:instance": target.name,
                "eks-responder:device": device,
                "eks-responder:finding-type": ctx.incident.type,
                "Name": f"eks-responder {ctx.incident.id} {target.name} {device}",
            }
            description = f"eks-responder evidence: incident {ctx.incident.id}, {target.name} {device}"
            snapshot = ec2.create_snapshot(volume, description, tags)
            snapshots[volume] = snapshot or "(dry run)"
            created.append(f"{volume} ({device}) -> {snapshots[volume]}")
        if not created:
            listed = ", ".join(f"{v} -> {s}" for v, s in snapshots.items())
            return Outcome(Status.SKIPPED, f"volumes of instance {target} already snapshotted: {listed}")
        if ctx.evidence is not None and not ctx.dry_run:
            base = f"{evidence_bundle.incident_prefix(ctx.incident)}/instances/{target.name}/snapshots"
            record = [{"device": d, "volume": v, "snapshot": snapshots[v]} for d, v in volumes]
            evidence_bundle.write(
                ctx, base, {"snapshots.json": evidence_bundle.as_json(record)}, {"instance": target.name}
            )
        return Outcome(Status.SUCCEEDED, f"snapshotted {', '.join(created)}", {"snapshots_created": snapshots})
