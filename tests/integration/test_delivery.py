"""Delivery guarantees as deployed: `make deploy`'s step against moto, and the template `make package` writes."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from chalicelib import functions
from chalicelib.entry import delivery
from deploy import dashboard
from deploy import delivery as deployed

pytestmark = pytest.mark.integration
STAGE = "prod"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("app.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture
def as_chalice_deploys(aws_session: Any) -> dict[str, Any]:
    """The stage as `chalice deploy` leaves it: a function per handler, a rule per event handler
    with its function as the only target (no retry policy, no dead letters), and the table."""
    iam, lambda_, events = aws_session.client("iam"), aws_session.client("lambda"), aws_session.client("events")
    service = {"Service": "lambda.amazonaws.com"}
    trust = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": service, "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = iam.create_role(RoleName="chalice-made", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for wanted in delivery.DELIVERIES:
        name = delivery.function_name(STAGE, wanted.function)
        made = lambda_.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                       Code={"ZipFile": _zip()})  # fmt: skip
        if wanted.rule:
            rule = delivery.rule_name(STAGE, wanted.function)
            events.put_rule(Name=rule, ScheduleExpression="rate(1 hour)")
            events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": made["FunctionArn"]}])
    dynamodb = aws_session.client("dynamodb")
    dynamodb.create_table(TableName="eks-responder-prod-incidents", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])  # fmt: skip
    return {"lambda": lambda_, "events": events, "dynamodb": dynamodb, "sqs": aws_session.client("sqs")}


def test_make_deploy_gives_every_function_a_failure_queue_retries_and_dead_letters(
    aws_session: Any, as_chalice_deploys: dict[str, Any]
) -> None:
    done = deployed.apply(aws_session, STAGE, "123456789012", "eks-responder-prod-incidents")
    sqs, lambda_, events = as_chalice_deploys["sqs"], as_chalice_deploys["lambda"], as_chalice_deploys["events"]
    attributes = sqs.get_queue_attributes(QueueUrl=done["queue"], AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 86400)
    assert attributes["SqsManagedSseEnabled"] == "true"
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == (
        "arn:aws:events:us-east-1:123456789012:rule/eks-responder-prod-*"
    )
    queue = attributes["QueueArn"]
    asynchronous = [d for d in delivery.DELIVERIES if d.asynchronous]
    assert len(done["functions"]) == len(asynchronous) == len(functions.FUNCTIONS) - 1  # all but the Slack route
    for wanted in asynchronous:
        config = lambda_.get_function_event_invoke_config(FunctionName=delivery.function_name(STAGE, wanted.function))
        assert config["MaximumRetryAttempts"] == delivery.MAX_RETRY_ATTEMPTS
        assert config["MaximumEventAgeInSeconds"] == delivery.MAX_EVENT_AGE_SECONDS
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue
        if wanted.rule:
            (target,) = events.list_targets_by_rule(Rule=delivery.rule_name(STAGE, wanted.function))["Targets"]
            assert target["DeadLetterConfig"] == {"Arn": queue}
            assert target["RetryPolicy"] == deployed.retry_policy()
            assert target["Arn"].endswith(delivery.function_name(STAGE, wanted.function))  # still its function
    table = as_chalice_deploys["dynamodb"]
    assert table.describe_table(TableName="eks-responder-prod-incidents")["Table"]["DeletionProtectionEnabled"]
    backups = table.describe_continuous_backups(TableName="eks-responder-prod-incidents")
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
        "PointInTimeRecoveryStatus"] == "ENABLED"  # fmt: skip
    again = deployed.apply(aws_session, STAGE, "123456789012", "eks-responder-prod-incidents")  # idempotent
    assert again["rules"] == done["rules"]


def test_every_delivery_failure_has_an_alarm_and_a_graph() -> None:
    alarms = {a["AlarmName"]: a for a in dashboard.alarms(STAGE, "arn:aws:sns:us-east-1:123456789012:t")}
    for wanted in delivery.DELIVERIES:
        name = wanted.function.name
        assert f"eks-responder-prod-{name}-throttles" in alarms
        if wanted.asynchronous:
            assert f"eks-responder-prod-{name}-dropped" in alarms
            assert alarms[f"eks-responder-prod-{name}-dropped"]["MetricName"] == "AsyncEventsDropped"
            assert f"eks-responder-prod-{name}-destination-failures" in alarms
        if wanted.rule:
            assert alarms[f"eks-responder-prod-{name}-rule-failed"]["Namespace"] == "AWS/Events"
    queue = alarms["eks-responder-prod-failure-queue"]
    assert (queue["MetricName"], queue["Dimensions"][0]["Value"]) == ("ApproximateNumberOfMessagesVisible",
                                                                      "eks-responder-prod-failures")  # fmt: skip
    widgets = json.dumps(dashboard.dashboard("us-east-1", STAGE))
    for metric in ("Throttles", "AsyncEventsDropped", "DestinationDeliveryFailures", "eks-responder-prod-failures"):
        assert metric in widgets


def test_doctor_says_when_a_bare_chalice_deploy_took_the_dead_letters_away(
    aws_session: Any, as_chalice_deploys: dict[str, Any]
) -> None:
    from chalicelib.commands import doctor
    from chalicelib.settings import Settings

    stage = Settings.from_env({"STAGE": STAGE})
    deployed.apply(aws_session, STAGE, "123456789012", None)
    (check,) = [c for c in doctor.run(stage, aws_session) if c.what == "delivery"]
    assert check.status == doctor.OK, check.line()
    # `chalice deploy` again: its rules' targets are put back as it makes them, without dead letters.
    events = as_chalice_deploys["events"]
    rule = delivery.rule_name(STAGE, functions.BY_NAME["on_guardduty_finding"])
    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
    events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": target["Arn"]}])
    (check,) = [c for c in doctor.run(stage, aws_session) if c.what == "delivery"]
    assert check.status == doctor.FAIL
    assert "the rule of on_guardduty_finding has no dead-letter queue" in check.said
    assert "make deploy STAGE=prod" in check.line()
