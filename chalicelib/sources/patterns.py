"""EventBridge patterns as literals, so importing app.py needs no environment."""

from __future__ import annotations

from typing import Any

GUARDDUTY_FINDING: dict[str, Any] = {
    "source": ["aws.guardduty"],
    # the agent of Runtime Monitoring stopping is a signal too (Healthy is not subscribed)
    "detail-type": ["GuardDuty Finding", "GuardDuty Runtime Protection Unhealthy"],
}

# GuardDuty's findings as Security Hub passes them on (ASFF, and OCSF in Security Hub's newer
# form), and Inspector's on ECR images (both forms): the function never wakes for Config findings.
SECURITYHUB_GUARDDUTY_FINDING: dict[str, Any] = {
    "source": ["aws.securityhub"],
    "detail-type": ["Security Hub Findings - Imported", "Findings Imported V2"],
    "$or": [
        {"detail": {"findings": {"ProductName": ["GuardDuty"]}}},
        # Inspector's image findings (its EC2 and Lambda ones are not the responder's)
        {"detail": {"findings": {"ProductName": ["Inspector"], "Resources": {"Type": ["AwsEcrContainerImage"]}}}},
        {"detail": {"findings": {"metadata": {"product": {"name": ["GuardDuty"]}}}}},
        {
            "detail": {
                "findings": {
                    "metadata": {"product": {"name": ["Inspector"]}},
                    "resources": {"type": ["AWS::ECR::ContainerImage", "AwsEcrContainerImage"]},
                }
            }
        },
    ],
}

# KMS calls that can take a key (and the cluster it protects) down or hand it to someone else.
KMS_TAMPERING_CALLS = [
    "ScheduleKeyDeletion",
    "DisableKey",
    "PutKeyPolicy",
    "CreateGrant",
    "DisableKeyRotation",
    "DeleteImportedKeyMaterial",
    "UpdatePrimaryRegion",
    "ReplicateKey",
    "UpdateAlias",
    "DeleteAlias",
]

KMS_API_CALL: dict[str, Any] = {
    "source": ["aws.kms"],
    "detail-type": ["AWS API Call via CloudTrail"],
    "detail": {"eventSource": ["kms.amazonaws.com"], "eventName": KMS_TAMPERING_CALLS},
}

KMS_KEY_EVENT: dict[str, Any] = {
    "source": ["aws.kms"],
    "detail-type": ["KMS CMK Deletion", "KMS Imported Key Material Expiration"],
}

ECR_IMAGE_SCAN: dict[str, Any] = {"source": ["aws.ecr"], "detail-type": ["ECR Image Scan"]}

INSPECTOR_IMAGE_FINDING: dict[str, Any] = {
    "source": ["aws.inspector2"],
    "detail-type": ["Inspector2 Finding"],
    "detail": {"resources": {"type": ["AWS_ECR_CONTAINER_IMAGE"]}},
}

# Flow logs delivered to S3 (text, gzip): the bucket must send its events to EventBridge. The key
# must look like a flow log's (`[prefix/]AWSLogs/<account>/vpcflowlogs/...`, Hive-style too), so
# other gzip logs in the account (load balancers, applications) never invoke the function; the
# function itself reads only FLOW_LOGS_BUCKET.
FLOW_LOG_OBJECT: dict[str, Any] = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {"object": {"key": [{"wildcard": "*AWSLogs/*vpcflowlogs*.log.gz"}]}},
}

# A memory capture's command ended (ec2:capture-memory's follow-up): only the stages' own documents,
# only the statuses with which a command ends.
MEMORY_CAPTURE_STATUS: dict[str, Any] = {
    "source": ["aws.ssm"],
    "detail-type": ["EC2 Command Invocation Status-change Notification"],
    "detail": {
        "document-name": [{"prefix": "eks-responder-"}],
        "status": ["Success", "Failed", "Cancelled", "TimedOut", "DeliveryTimedOut", "ExecutionTimedOut",
                   "Undeliverable", "Terminated", "InvalidPlatform", "AccessDenied"],
    },
}  # fmt: skip
