"""Connecting flow logs to a deployed stage, against moto: permission, subscription, bucket events."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from chalicelib.sources import patterns
from deploy import flow_logs

pytestmark = pytest.mark.integration


def _deployed_function(aws_session: Any) -> str:
    iam = aws_session.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "lambda.amazonaws.com"}}]}  # fmt: skip
    role = iam.create_role(RoleName="eks-responder-dev", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    made = aws_session.client("lambda").create_function(
        FunctionName=flow_logs.function_name("dev"), Runtime="python3.11", Role=role, Handler="app.handler",
        Code={"ZipFile": package.getvalue()},
    )  # fmt: skip
    return str(made["FunctionArn"])


def test_a_log_group_is_subscribed_once_with_a_scoped_permission(aws_session: Any) -> None:
    arn = _deployed_function(aws_session)
    logs = aws_session.client("logs")
    logs.create_log_group(logGroupName="/vpc/flow-logs")
    assert flow_logs.subscribe(aws_session, "dev", "/vpc/flow-logs") == arn
    assert flow_logs.subscribe(aws_session, "dev", "/vpc/flow-logs") == arn  # again: nothing new
    (found,) = logs.describe_subscription_filters(logGroupName="/vpc/flow-logs")["subscriptionFilters"]
    assert (found["filterName"], found["filterPattern"], found["destinationArn"]) == ("eks-responder", "", arn)
    policy = json.loads(aws_session.client("lambda").get_policy(FunctionName=arn)["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "logs.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(":log-group:/vpc/flow-logs:*")


def test_a_bucket_sends_its_flow_log_objects_to_the_function_pattern(aws_session: Any) -> None:
    s3, sqs, bridge = aws_session.client("s3"), aws_session.client("sqs"), aws_session.client("events")
    s3.create_bucket(Bucket="flow-logs")
    url = sqs.create_queue(QueueName="on-flow-log-object")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bridge.put_rule(Name="on_flow_log_object", EventPattern=json.dumps(patterns.FLOW_LOG_OBJECT), State="ENABLED")
    bridge.put_targets(Rule="on_flow_log_object", Targets=[{"Id": "function", "Arn": queue}])
    s3.put_object(Bucket="flow-logs", Key="before.log.gz", Body=b"")
    assert flow_logs.main(["--stage", "dev", "--region", "us-east-1", "--bucket", "flow-logs"]) == 0
    assert flow_logs.main(["--stage", "dev", "--region", "us-east-1", "--bucket", "flow-logs"]) == 0
    key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/x.log.gz"
    s3.put_object(Bucket="flow-logs", Key=key, Body=b"")
    s3.put_object(Bucket="flow-logs", Key="AWSLogs/other.csv", Body=b"")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages] == [key]
