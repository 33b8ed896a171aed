"""The deployed Lambda functions, what each one handles and which rules it can reach.

Each function gets its own IAM role and policy (chalicelib.generate.permissions), holding only what the
actions of the rules its incidents can reach (chalicelib.policy.reach) declare, plus what its source needs to read. A
function that never handles a GuardDuty finding never holds IAM writes, and one whose rules
never touch a cluster is not mapped into Kubernetes at all.
"""

from __future__ import annotations

import msgspec

APP_NAME = "eks-responder"


class Function(msgspec.Struct, frozen=True):
    name: str
    sources: tuple[str, ...]  # the incident sources it handles; empty for the snapshot and the approvals API
    summary: str
    # events | snapshot (key policies) | expiry (plans) | approvals (the Slack route) | captures (memory)
    kind: str = "events"

    def role_name(self, stage: str) -> str:
        """The role Chalice creates for the function (app-stage-function)."""
        return f"{APP_NAME}-{stage}-{self.name}"

    def log_group(self, stage: str) -> str:
        return f"/aws/lambda/{APP_NAME}-{stage}-{self.name}"


FUNCTIONS: tuple[Function, ...] = (
    Function("on_guardduty_finding", ("guardduty",), "GuardDuty findings"),
    Function("on_kms_api_call", ("kms",), "CloudTrail KMS calls"),
    Function("on_kms_key_event", ("kms",), "KMS key events"),
    Function("on_ecr_image_scan", ("ecr", "inspector"), "ECR scan results"),
    Function("on_inspector_finding", ("inspector",), "Inspector findings on images"),
    # After the image functions: an Inspector copy is an "inspector" incident, proved against theirs.
    Function("on_securityhub_finding", ("securityhub", "inspector"), "findings via Security Hub"),
    Function("on_flow_log_object", ("flowlogs",), "flow logs delivered to S3"),
    Function("on_flow_logs", ("flowlogs",), "flow logs from a CloudWatch Logs subscription"),
    Function("on_memory_capture_status", (), "memory captures that ended: manifest and message", "captures"),
    Function("refresh_key_policies", (), "the hourly key-policy snapshot", "snapshot"),
    Function("expire_plans", (), "plans whose approval time ran out, told once", "expiry"),
    # Chalice's name for the function behind API Gateway: Slack's Approve and Reject clicks.
    Function("api_handler", (), "Slack interactivity: approvals", "approvals"),
)
BY_NAME = {f.name: f for f in FUNCTIONS}


def for_source(source: str) -> Function:
    """The first function that handles incidents of `source` (functions of one source share a policy)."""
    return next(f for f in FUNCTIONS if source in f.sources)
