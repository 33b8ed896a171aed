"""ec2:capture-memory: the node's memory and volatile state, captured on the node into the evidence bucket."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, ClassVar

from msgspec import Meta

from chalicelib.actions import evidence_bundle
from chalicelib.actions.base import Action, ActionContext, Params
from chalicelib.actions.ec2 import memory_document
from chalicelib.actions.ec2.common import INSTANCE_ARN, NODE_CONDITION, aws, missing, present, tags_of
from chalicelib.interfaces import IAMStatement, Outcome, Status, Target

CAPTURE_TAG = "eks-responder:memory-capture"  # <command id>/<started>/<incident>
ONE_CAPTURE_EVERY = timedelta(hours=1)  # a node several findings name is captured once, not once each
SEND_TIMEOUT_SECONDS = 600  # an agent that has not taken the command in 10 minutes never runs it


class CaptureMemoryParams(Params, frozen=True):
    # How long the presigned upload URLs stay valid (a role's URL also ends with its session).
    upload_minutes: Annotated[int, Meta(ge=15, le=720)] = 120


class CaptureMemory(Action):
    """Capture the node's memory with AVML and its volatile state (processes, sockets, addresses,
    routes, modules, mounts, logins, containers) through SSM Run Command, before the node changes
    further. The command runs the stage's own document (deploy/ssm), which accepts nothing but
    presigned URLs of the evidence bucket: the node downloads AVML from `<prefix>/tools/avml`,
    checks it against AVML_SHA256, and uploads `volatile.txt`, `memory.lime` (compressed) and
    `SHA256SUMS` to the incident's folder with Content-MD5, so neither the node's own role nor
    anyone who can send the document can write elsewhere.

    The Lambda does not wait: SSM's `EC2 Command Invocation Status-change Notification` (the
    follow-up event) wakes `on_memory_capture_status`, which writes the capture's MANIFEST.json
    with the hashes and says how it ended. One capture per node an hour, whatever the incident (a
    tag records it): a node several findings name is not captured once each.

    An isolated node reaches SSM and S3 only through VPC endpoints that FORENSICS_EGRESS lets the
    isolation group reach: without them, a capture still running when the node is isolated
    fails, and the follow-up says so.

    Example::

        - action: ec2:capture-memory
          params: {upload_minutes: 120}
    """

    name = "ec2:capture-memory"
    writes_evidence = True
    target_kind = "instance"
    refused_by_managed_instances = "SSM Run Command (AWS operates the instance: no agent takes commands)"
    not_on: ClassVar[dict[str, str]] = {
        "bottlerocket": "Bottlerocket has no shell for the capture script (SSM runs commands in its control "
        "container, which cannot read the host's memory): capture through the admin container by hand "
        "(`apiclient exec admin sheltie`, then AVML), or keep the volumes (ec2:snapshot-volumes)",
        "windows": "the capture script is for Linux (AVML): capture a Windows node's memory by hand with a "
        "Windows tool, or keep the volumes (ec2:snapshot-volumes)",
    }
    summary = "capture the node's memory (AVML) and volatile state through SSM Run Command into the evidence bucket"
    params_model = CaptureMemoryParams
    iam: ClassVar[tuple[IAMStatement, ...]] = (
        IAMStatement(("ec2:DescribeInstances",)),
        # The one document, and only on nodes of an EKS cluster.
        IAMStatement(("ssm:SendCommand",), (memory_document.DOCUMENT_ARN,)),
        IAMStatement(("ssm:SendCommand",), (INSTANCE_ARN,), {"Null": {"ssm:resourceTag/eks:cluster-name": "false"}}),
        IAMStatement(("ec2:CreateTags",), (INSTANCE_ARN,), NODE_CONDITION),
    )
    keeps = "the capture is evidence: it stays in the bucket (Object Lock, when the bucket has it)"

    def describe(self, target: Target, params: Params) -> str:
        return f"capture the memory and volatile state of instance {target} (AVML through SSM) into the evidence bucket"

    def run(self, ctx: ActionContext, target: Target, params: Params) -> Outcome:
        assert isinstance(params, CaptureMemoryParams)
        ec2 = aws(ctx)
        found = present(ctx, target)
        if found is None:
            return missing(target)
        earlier = _earlier(tags_of(found).get(CAPTURE_TAG, ""), ctx, target)
        if earlier is not None:
            return earlier
        if not ctx.settings.avml_sha256:
            return Outcome(Status.SKIPPED, f"instance {target}: memory capture is not set up (AVML_SHA256 unset; "
                                           "docs/memory-capture.md)")  # fmt: skip
        seconds = params.upload_minutes * 60
        evidence = ctx.evidence
        tool = evidence.presign(memory_document.TOOL_KEY, "GET", seconds) if evidence is not None else None
        if evidence is None or tool is None:
            return Outcome(Status.SKIPPED, f"instance {target}: memory capture needs the evidence bucket "
                                           "(EVIDENCE_BUCKET): the node uploads there")  # fmt: skip
        base = f"{evidence_bundle.incident_prefix(ctx.incident)}/instances/{target.name}/memory"
        parameters = {"ToolUrl": [tool], "ToolSha256": [ctx.settings.avml_sha256]}
        for parameter, file_name in memory_document.UPLOADS.items():
            parameters[parameter] = [str(evidence.presign(f"{base}/{file_name}", "PUT", seconds))]
        document = memory_document.document_name(ctx.settings.stage)
        sent = ec2.send_command(document, target.name, parameters, f"eks-responder incident {ctx.incident.id}",
                                SEND_TIMEOUT_SECONDS)  # fmt: skip
        if sent is None:
            return Outcome(Status.SUCCEEDED, f"instance {target}: memory capture not started (dry run)")
        record = memory_document.record(ctx.incident, target.name, sent, document, base, ctx.now)
        evidence.put(f"{memory_document.CAPTURES_KEY}/{sent}.json", json.dumps(record).encode(), "application/json")
        ec2.tag([target.name], {CAPTURE_TAG: f"{sent}/{ctx.now.isoformat()}/{_tagged(ctx.incident.id)}"})
        where = evidence.location(base)
        detail = (f"instance {target}: memory capture started (SSM command {sent}, document {document}): "
                  f"volatile.txt, memory.lime and SHA256SUMS to {where}/; reported when the command ends")  # fmt: skip
        if not ctx.settings.forensics_egress:
            detail += ("; FORENSICS_EGRESS is unset, so an isolated node cannot reach SSM or S3: a capture still "
                       "running at isolation fails")  # fmt: skip
        return Outcome(Status.SUCCEEDED, detail, {"command_id": sent, "evidence": where})


def _tagged(incident_id: str) -> str:
    """The incident id as a tag value may hold it (EC2's characters, 256 in all with the rest)."""
    return re.sub(r"[^A-Za-z0-9 +\-=._:/@]", "_", incident_id)[:180]


def _earlier(tag: str, ctx: ActionContext, target: Target) -> Outcome | None:
    """Why no new capture starts: this incident's, or another's within the hour (None: start one)."""
    command, _, rest = tag.partition("/")
    started, _, incident = rest.partition("/")
    if not command or not incident:
        return None
    if incident == _tagged(ctx.incident.id):
        return Outcome(Status.SKIPPED, f"instance {target}: memory capture already started (SSM command {command})")
    try:
        recent = ctx.now - datetime.fromisoformat(started) < ONE_CAPTURE_EVERY
    except ValueError:
        recent = False
    if recent:
        return Outcome(Status.SKIPPED, f"instance {target}: a memory capture started at {started} for incident "
                                       f"{incident} (SSM command {command}); one an hour")  # fmt: skip
    return None
