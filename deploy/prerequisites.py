"""Create what a stage needs before `chalice deploy`, and point the stage's configuration at it.

    python -m deploy.prerequisites --stage dev [--account-id 111122223333] [--region eu-west-1]

Idempotent: existing resources are kept. Creates the DynamoDB table (exactly-once and incident
records, TTL on `expiration`), the evidence bucket (versioned, S3 Object Lock in COMPLIANCE mode,
90 days, a policy that denies plain HTTP, deletes and lock changes; an existing bucket that lacks
any of it is refused), the SNS topic and a Secrets Manager secret for the Slack webhook URL (set its value
with `aws secretsmanager put-secret-value`). Then writes their names into the stage's
`environment_variables` in .chalice/config.json and regenerates the IAM policies.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import boto3

from chalicelib.executors.evidence import evidence_bucket_problems
from deploy import delivery

ROOT = Path(__file__).resolve().parent.parent
RETENTION_DAYS = 90


def _exists(call: Any, *missing: str) -> bool:
    try:
        call()
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in missing:
            return False
        raise
    return True


def evidence_policy(bucket: str) -> dict[str, Any]:
    """TLS only; nobody deletes evidence or loosens the lock, whatever their own policies allow."""
    arn = f"arn:aws:s3:::{bucket}"
    everyone = {"AWS": "*"}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TLSOnly", "Effect": "Deny", "Principal": everyone, "Action": "s3:*",
             "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "NoDeletes", "Effect": "Deny", "Principal": everyone,
             "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket"],
             "Resource": [arn, f"{arn}/*"]},
            {"Sid": "NoLockChanges", "Effect": "Deny", "Principal": everyone,
             "Action": ["s3:PutBucketObjectLockConfiguration", "s3:BypassGovernanceRetention",
                        "s3:PutObjectRetention", "s3:PutObjectLegalHold"],
             "Resource": [arn, f"{arn}/*"]},
        ],
    }  # fmt: skip


def create(session: Any, stage: str, account: str) -> dict[str, str]:
    region = session.region_name
    names = {
        "INCIDENTS_TABLE": f"eks-responder-{stage}-incidents",
        "EVIDENCE_BUCKET": f"eks-responder-{stage}-evidence-{account}-{region}",
        "SLACK_WEBHOOK_SECRET": f"eks-responder/{stage}/slack-webhook",
    }
    dynamodb = session.client("dynamodb")
    table = names["INCIDENTS_TABLE"]
    if not _exists(lambda: dynamodb.describe_table(TableName=table), "ResourceNotFoundException"):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=table)
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
        )
    # The table holds exactly-once, the caps and every plan: restorable, and not deleted by a slip.
    delivery.protect_table(session, table)
    names["FAILURE_QUEUE_URL"] = delivery.ensure_queue(session, stage, account)[0]
    s3 = session.client("s3")
    bucket = names["EVIDENCE_BUCKET"]
    if not _exists(lambda: s3.head_bucket(Bucket=bucket), "404", "NoSuchBucket", "NotFound"):
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True, **location)
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": RETENTION_DAYS}},
            },
        )
        blocked = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict.fromkeys(blocked, True))
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(evidence_policy(bucket)))
    problems = evidence_bucket_problems(s3, bucket)
    if problems:
        raise SystemExit(f"evidence bucket {bucket} exists but cannot be trusted with evidence: {'; '.join(problems)}")
    memory_capture_document(session.client("ssm"), stage, bucket)
    names["SNS_TOPIC_ARN"] = session.client("sns").create_topic(Name=f"eks-responder-{stage}-incidents")["TopicArn"]
    secrets = session.client("secretsmanager")
    secret = names["SLACK_WEBHOOK_SECRET"]
    if not _exists(lambda: secrets.describe_secret(SecretId=secret), "ResourceNotFoundException"):
        secrets.create_secret(Name=secret, Description="Slack incoming webhook URL for eks-responder")
    names["POLICY_ACCOUNT_ID"] = account
    names["POLICY_REGION"] = region
    return names


def memory_capture_document(ssm: Any, stage: str, bucket: str) -> str:
    """The stage's memory-capture document (ec2:capture-memory), its parameters bound to this
    bucket: created, or given a new default version when the repository's differs."""
    from chalicelib.actions.ec2 import memory_document

    if not re.fullmatch(memory_document.BUCKET_NAME[1:-1], bucket):
        raise SystemExit(f"evidence bucket {bucket}: a name with dots cannot bind the memory-capture document")
    name = memory_document.document_name(stage)
    content = json.dumps(memory_document.content(bucket))
    try:
        current = ssm.get_document(Name=name, DocumentFormat="JSON")
    except ssm.exceptions.InvalidDocument:
        ssm.create_document(Name=name, Content=content, DocumentType="Command", DocumentFormat="JSON")
        return name
    if json.loads(current["Content"]) != json.loads(content):
        version = ssm.update_document(Name=name, Content=content, DocumentVersion="$LATEST", DocumentFormat="JSON")
        latest = version["DocumentDescription"]["DocumentVersion"]
        ssm.update_document_default_version(Name=name, DocumentVersion=latest)
    return name


def configure(config_file: Path, stage: str, names: dict[str, str]) -> None:
    config = json.loads(config_file.read_text())
    config["stages"].setdefault(stage, {"environment_variables": {}})
    config["stages"][stage].setdefault("environment_variables", {}).update(names)
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.prerequisites", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region", help="default: your AWS configuration's region")
    parser.add_argument("--account-id", help="default: the account of your credentials")
    parser.add_argument("--config", type=Path, default=ROOT / ".chalice" / "config.json")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    if not session.region_name:
        sys.stderr.write("no region: pass --region or configure one\n")
        return 2
    account = args.account_id or session.client("sts").get_caller_identity()["Account"]
    names = create(session, args.stage, account)
    configure(args.config, args.stage, names)
    for key, value in names.items():
        sys.stdout.write(f"{key}={value}\n")
    if args.config == ROOT / ".chalice" / "config.json":
        from chalicelib.generate import permissions

        permissions.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
