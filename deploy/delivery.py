"""The stage's delivery guarantees, as deployed (chalicelib.entry.delivery holds the values).

    python -m deploy.delivery --stage prod                       # `make deploy` runs it after `chalice deploy`
    python -m deploy.delivery --stage prod --template sam.json   # `make package`: the same in the template

The failure queue (SQS, SQS-managed encryption, 14 days), each asynchronously invoked function's
retries, event age and on-failure destination, each EventBridge rule target's retry policy and
dead-letter queue, and point-in-time recovery and deletion protection on the incident table.
`chalice deploy` rewrites its rules' targets without these, so `make deploy` always runs this after
it (and `eks-responder doctor` says when they are missing). Idempotent.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib import functions
from chalicelib.entry import delivery

ROOT = Path(__file__).resolve().parents[1]


def queue_attributes() -> dict[str, str]:
    return {"MessageRetentionPeriod": str(delivery.RETENTION_SECONDS), "SqsManagedSseEnabled": "true",
            "VisibilityTimeout": "300"}  # fmt: skip


def queue_policy(queue_arn: str, rules_arn_pattern: str, account: str) -> dict[str, Any]:
    """Only this stage's rules (EventBridge's dead-letter delivery) may send; Lambda's on-failure
    destination sends with each function's own role, which its policy allows."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "RuleDeadLetters", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": rules_arn_pattern},
                          "StringEquals": {"aws:SourceAccount": account}},
        }],
    }  # fmt: skip


def invoke_config(queue_arn: str) -> dict[str, Any]:
    return {"MaximumRetryAttempts": delivery.MAX_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": delivery.MAX_EVENT_AGE_SECONDS,
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}}}  # fmt: skip


def retry_policy() -> dict[str, int]:
    return {"MaximumRetryAttempts": delivery.RULE_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": delivery.RULE_EVENT_AGE_SECONDS}  # fmt: skip


# -- make deploy -------------------------------------------------------------------------------------


def ensure_queue(session: Any, stage: str, account: str) -> tuple[str, str]:
    """The failure queue (created, or its attributes and policy set again): its URL and ARN."""
    sqs = session.client("sqs")
    url = sqs.create_queue(QueueName=delivery.queue_name(stage), Attributes=queue_attributes())["QueueUrl"]
    arn = delivery.queue_arn(stage, session.region_name, account)
    rules = f"arn:aws:events:{session.region_name}:{account}:rule/{functions.APP_NAME}-{stage}-*"
    policy = json.dumps(queue_policy(arn, rules, account))
    sqs.set_queue_attributes(QueueUrl=url, Attributes={**queue_attributes(), "Policy": policy})
    return url, arn


def protect_table(session: Any, table: str) -> None:
    dynamodb = session.client("dynamodb")
    recovery = {"PointInTimeRecoveryEnabled": True}
    dynamodb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification=recovery)
    if not dynamodb.describe_table(TableName=table)["Table"].get("DeletionProtectionEnabled"):
        dynamodb.update_table(TableName=table, DeletionProtectionEnabled=True)


def apply(session: Any, stage: str, account: str, table: str | None) -> dict[str, Any]:
    url, arn = ensure_queue(session, stage, account)
    lambda_, events = session.client("lambda"), session.client("events")
    configured, targets = [], []
    for wanted in delivery.DELIVERIES:
        if not wanted.asynchronous:
            continue
        name = delivery.function_name(stage, wanted.function)
        lambda_.put_function_event_invoke_config(FunctionName=name, **invoke_config(arn))
        configured.append(name)
        if not wanted.rule:
            continue
        rule = delivery.rule_name(stage, wanted.function)
        found = events.list_targets_by_rule(Rule=rule)["Targets"]
        kept = [{**t, "DeadLetterConfig": {"Arn": arn}, "RetryPolicy": retry_policy()} for t in found]
        if kept:
            events.put_targets(Rule=rule, Targets=kept)
            targets.append(rule)
    if table:
        protect_table(session, table)
    return {"queue": url, "functions": configured, "rules": targets, "table": table}


# -- make package ------------------------------------------------------------------------------------

QUEUE = "FailureQueue"


def logical_id(function: functions.Function) -> str:
    """The template's name for a function (Chalice's: the handler name in CamelCase; the route's is APIHandler)."""
    if function.kind == "approvals":
        return "APIHandler"
    return "".join(part.capitalize() for part in function.name.split("_"))


def template(document: dict[str, Any], stage: str) -> dict[str, Any]:
    """The SAM template of `chalice package`, with the stage's delivery guarantees and alarms."""
    from deploy import dashboard

    out = copy.deepcopy(document)
    resources = out["Resources"]
    arn = {"Fn::GetAtt": [QUEUE, "Arn"]}
    resources[QUEUE] = {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
                        "Properties": {"QueueName": delivery.queue_name(stage), "MessageRetentionPeriod":
                                       delivery.RETENTION_SECONDS, "SqsManagedSseEnabled": True,
                                       "VisibilityTimeout": 300}}  # fmt: skip
    rules = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${AWS::StackName}-*"}
    policy = queue_policy("QUEUE_ARN", "RULES", "ACCOUNT")
    statement = policy["Statement"][0]
    statement["Resource"] = arn
    statement["Condition"] = {
        "ArnLike": {"aws:SourceArn": rules},
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }
    resources[f"{QUEUE}Policy"] = {"Type": "AWS::SQS::QueuePolicy",
                                   "Properties": {"Queues": [{"Ref": QUEUE}], "PolicyDocument": policy}}  # fmt: skip
    rule_ids: dict[str, str] = {}
    for wanted in delivery.DELIVERIES:
        function = resources[logical_id(wanted.function)]["Properties"]
        if not wanted.asynchronous:
            continue
        function["EventInvokeConfig"] = {
            "MaximumRetryAttempts": delivery.MAX_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": delivery.MAX_EVENT_AGE_SECONDS,
            "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": arn}},
        }
        for event_id, event in (function.get("Events") or {}).items():
            if event["Type"] in ("CloudWatchEvent", "Schedule", "EventBridgeRule"):
                event["Properties"]["DeadLetterConfig"] = {"Arn": arn}
                event["Properties"]["RetryPolicy"] = retry_policy()
                rule_ids[wanted.function.name] = logical_id(wanted.function) + event_id  # SAM's rule resource
    for alarm in dashboard.delivery_alarms(stage, None):
        resources["Alarm" + "".join(c for c in alarm["AlarmName"].title() if c.isalnum())] = _cfn_alarm(alarm, rule_ids)
    out.setdefault("Outputs", {})["FailureQueueUrl"] = {"Value": {"Ref": QUEUE}}
    return out


def _cfn_alarm(alarm: dict[str, Any], rule_ids: dict[str, str]) -> dict[str, Any]:
    """An alarm of deploy.dashboard as a template resource: its dimensions point at the template's resources."""
    properties = {k: v for k, v in alarm.items() if k not in ("AlarmName",)}
    dimensions = []
    for dimension in alarm["Dimensions"]:
        value: Any = dimension["Value"]
        if dimension["Name"] == "FunctionName":
            function = next(f for f in functions.FUNCTIONS if value.endswith(f"-{f.name}"))
            value = {"Ref": logical_id(function)}
        elif dimension["Name"] == "RuleName":
            function = next(f for f in functions.FUNCTIONS if value.endswith(f"-{f.name}-event"))
            value = {"Ref": rule_ids[function.name]}
        elif dimension["Name"] == "QueueName":
            value = {"Fn::GetAtt": [QUEUE, "QueueName"]}
        dimensions.append({"Name": dimension["Name"], "Value": value})
    properties["Dimensions"] = dimensions
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _stage_env(stage: str) -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.delivery", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--region", help="default: your AWS configuration's region")
    parser.add_argument("--template", type=Path, help="rewrite this SAM template (make package) instead")
    args = parser.parse_args(argv)
    if args.template:
        document = json.loads(args.template.read_text())
        args.template.write_text(json.dumps(template(document, args.stage), indent=2) + "\n")
        sys.stdout.write(f"{args.template}: failure queue, retries, dead letters and delivery alarms added\n")
        return 0
    import boto3

    session = boto3.session.Session(region_name=args.region)
    if not session.region_name:
        sys.stderr.write("no region: pass --region or configure one\n")
        return 2
    account = session.client("sts").get_caller_identity()["Account"]
    done = apply(session, args.stage, account, _stage_env(args.stage).get("INCIDENTS_TABLE") or None)
    table = done["table"] or "(none)"
    sys.stdout.write(f"failure queue {done['queue']}; {len(done['functions'])} functions, "
                     f"{len(done['rules'])} rules configured; table {table} protected\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
