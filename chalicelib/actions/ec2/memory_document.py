"""The SSM command document `ec2:capture-memory` runs on a node: AVML and volatile state, uploaded
to the evidence bucket through presigned URLs.

The document is the only thing the responder may run on a node (its IAM allows `ssm:SendCommand`
on this document alone), and its parameters accept nothing but presigned URLs of the evidence
bucket and a SHA-256: whoever else can send it cannot make it upload a node's memory anywhere
else, or run anything but the AVML binary the operator put in the bucket.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.incident import Incident

# The files one capture writes, and the document parameter that carries each presigned PUT URL.
UPLOADS: dict[str, str] = {"VolatileUrl": "volatile.txt", "ImageUrl": "memory.lime", "SumsUrl": "SHA256SUMS"}
TOOL_KEY = "tools/avml"  # under the evidence prefix; the operator uploads AVML there (docs/memory-capture.md)
CAPTURES_KEY = "captures"  # one record per command sent: what the completion report reads
BUCKET_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"  # no dots: the name goes into a regular expression
_QUERY = r"\?[A-Za-z0-9%&=._~-]+$"  # a presigned query string: no quote, space or shell character
_HOST = r"\.s3\.([a-z0-9-]+\.)?amazonaws\.com(\.cn)?/"


def document_name(stage: str) -> str:
    return f"eks-responder-{stage}-memory-capture"


DOCUMENT_ARN = "arn:aws:ssm:{region}:{account}:document/eks-responder-{stage}-memory-capture"


def upload_pattern(bucket: str, file_name: str) -> str:
    """The URLs a parameter accepts: a presigned URL of `file_name` in a capture folder of the bucket."""
    return f"^https://{bucket}{_HOST}[A-Za-z0-9/_.=-]+/memory/{re.escape(file_name)}{_QUERY}"


def tool_pattern(bucket: str) -> str:
    return f"^https://{bucket}{_HOST}([A-Za-z0-9_.=-]+/)*{re.escape(TOOL_KEY)}{_QUERY}"


def record(
    incident: Incident, instance_id: str, command: str, document: str, base: str, now: datetime
) -> dict[str, Any]:
    """What `<prefix>/captures/<command>.json` keeps for the completion report: the incident, the
    node, and where the files go. In the evidence bucket, so nothing but the responder writes it."""
    from chalicelib.incident import incident_state

    return {
        "command_id": command, "document": document, "instance": instance_id, "evidence": base,
        "started_at": now.isoformat(), "incident": incident_state(incident),
    }  # fmt: skip


# Volatile state first (it changes as the capture runs), then memory; each upload carries its
# Content-MD5, which S3 checks (and which a bucket with Object Lock requires).
SCRIPT = r"""set -eu
umask 077
work="$(mktemp -d /var/tmp/eks-responder-capture.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"
put() { curl -fsS --retry 3 -H "Content-MD5: $(openssl md5 -binary "$1" | base64)" -T "$1" "$2"; }
curl -fsS --retry 3 -o avml '{{ToolUrl}}'
printf '%s  avml\n' '{{ToolSha256}}' | sha256sum -c -
chmod 700 avml
{
  echo "== captured $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"; uname -a; cat /proc/uptime
  echo "== processes"; ps auxwwf
  echo "== sockets"; ss -tanupe
  echo "== addresses"; ip addr; ip route; ip neigh
  echo "== modules"; lsmod
  echo "== mounts"; cat /proc/mounts
  echo "== executables"; ls -l /proc/[0-9]*/exe 2>/dev/null
  echo "== users"; who -a; last -n 50
  echo "== containers"; crictl ps -a 2>/dev/null
} > volatile.txt 2>&1 || true
put volatile.txt '{{VolatileUrl}}'
./avml --compress memory.lime
sha256sum memory.lime volatile.txt > SHA256SUMS
put memory.lime '{{ImageUrl}}'
put SHA256SUMS '{{SumsUrl}}'
echo "capture uploaded: $(cat SHA256SUMS | tr '\n' ' ')"
"""


def content(bucket: str) -> dict[str, Any]:
    """The document (schema 2.2) for an evidence bucket (a name, or a template reference to one)."""
    parameters: dict[str, Any] = {
        "ToolUrl": {
            "type": "String",
            "description": "Presigned GET URL of the AVML binary in the evidence bucket",
            "allowedPattern": tool_pattern(bucket),
        },
        "ToolSha256": {
            "type": "String",
            "description": "SHA-256 of the AVML binary (AVML_SHA256): checked before it runs",
            "allowedPattern": "^[0-9a-f]{64}$",
        },
    }
    for parameter, file_name in UPLOADS.items():
        parameters[parameter] = {
            "type": "String",
            "description": f"Presigned PUT URL for {file_name} in the incident's evidence folder",
            "allowedPattern": upload_pattern(bucket, file_name),
        }
    return {
        "schemaVersion": "2.2",
        "description": "eks-responder: capture a node's memory (AVML) and volatile state into the evidence bucket",
        "parameters": parameters,
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "captureMemory",
                "precondition": {"StringEquals": ["platformType", "Linux"]},
                "inputs": {"runCommand": SCRIPT.splitlines(), "timeoutSeconds": "7200"},
            }
        ],
    }


def template(stage: str) -> dict[str, Any]:
    """The document as CloudFormation (one stack per account, or inside the spoke template)."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"eks-responder memory capture document for stage {stage} "
        "(generated by `python -m chalicelib.generate.permissions`)",
        "Parameters": {"EvidenceBucket": evidence_parameter()},
        "Resources": {"MemoryCaptureDocument": resource(stage, "EvidenceBucket")},
        "Outputs": {"DocumentName": {"Value": {"Ref": "MemoryCaptureDocument"}}},
    }


def evidence_parameter() -> dict[str, Any]:
    return {
        "Type": "String",
        "AllowedPattern": BUCKET_NAME,
        "Description": "The hub's evidence bucket (EVIDENCE_BUCKET): the only place a capture may be uploaded",
    }


def resource(stage: str, bucket_parameter: str) -> dict[str, Any]:
    return {
        "Type": "AWS::SSM::Document",
        "Properties": {
            "Name": document_name(stage),
            "DocumentType": "Command",
            "UpdateMethod": "NewVersion",
            "Content": _substituted(content("${" + bucket_parameter + "}")),
        },
    }


def _substituted(value: Any) -> Any:
    """Strings naming the bucket parameter become `Fn::Sub` (its other `$` stay literal)."""
    if isinstance(value, dict):
        return {k: _substituted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v) for v in value]
    if isinstance(value, str) and "${" in value:
        return {"Fn::Sub": value}
    return value
