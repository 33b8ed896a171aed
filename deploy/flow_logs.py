"""Connect flow logs to a deployed stage: what `chalice deploy` cannot do.

    python -m deploy.flow_logs --stage prod --log-group /vpc/flow-logs      # CloudWatch Logs delivery
    python -m deploy.flow_logs --stage prod --bucket my-flow-log-bucket     # S3 delivery

CloudWatch Logs: Chalice has no subscription decorator, so this lets CloudWatch Logs invoke the
stage's `on_flow_logs` function (a resource policy statement scoped to the log group and account)
and puts a subscription filter (empty pattern: every record) on the log group.

S3: the stage's `on_flow_log_object` function subscribes to EventBridge "Object Created" events;
this turns on the bucket's EventBridge notifications (other notification settings are kept).

Idempotent: run it again and nothing changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

import boto3

FILTER_NAME = "eks-responder"


def function_name(stage: str) -> str:
    return f"eks-responder-{stage}-on_flow_logs"  # Chalice's {app}-{stage}-{function}


def subscribe(session: Any, stage: str, log_group: str) -> str:
    """Allow the log group to invoke the function, then subscribe it. Returns the function ARN."""
    region = session.region_name
    account = session.client("sts").get_caller_identity()["Account"]
    aws_lambda, logs = session.client("lambda"), session.client("logs")
    arn = aws_lambda.get_function(FunctionName=function_name(stage))["Configuration"]["FunctionArn"]
    source = f"arn:aws:logs:{region}:{account}:log-group:{log_group}:*"
    statement = "logs-" + hashlib.sha256(log_group.encode()).hexdigest()[:16]
    if statement not in _statements(aws_lambda, arn):
        aws_lambda.add_permission(FunctionName=arn, StatementId=statement, Action="lambda:InvokeFunction",
                                  Principal="logs.amazonaws.com", SourceArn=source, SourceAccount=account)  # fmt: skip
    logs.put_subscription_filter(logGroupName=log_group, filterName=FILTER_NAME, filterPattern="", destinationArn=arn)
    return str(arn)


def _statements(aws_lambda: Any, arn: str) -> set[str]:
    try:
        policy = json.loads(aws_lambda.get_policy(FunctionName=arn)["Policy"])
    except aws_lambda.exceptions.ResourceNotFoundException:  # no resource policy yet
        return set()
    return {str(s.get("Sid")) for s in policy.get("Statement", [])}


def notify_eventbridge(session: Any, bucket: str) -> None:
    s3 = session.client("s3")
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" not in current:
        current["EventBridgeConfiguration"] = {}
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--log-group", help="the flow log's CloudWatch Logs group")
    where.add_argument("--bucket", help="the flow log's S3 bucket")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region) if args.region else boto3.session.Session()
    if args.log_group:
        arn = subscribe(session, args.stage, args.log_group)
        print(f"{args.log_group} -> {arn} (subscription filter {FILTER_NAME})")
    else:
        notify_eventbridge(session, args.bucket)
        print(f"s3://{args.bucket} sends Object Created events to EventBridge; set FLOW_LOGS_BUCKET={args.bucket}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
