"""The EventBridge patterns the app subscribes with, run through moto's real pattern matcher."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.sources import patterns
from chalicelib.sources.envelope import split_document
from tests.conftest import EVENTS, GUARDDUTY_SAMPLES, SAMPLES, load_json

pytestmark = pytest.mark.integration
SUBSCRIPTIONS = {
    "guardduty": patterns.GUARDDUTY_FINDING,
    "kms-api-call": patterns.KMS_API_CALL,
    "kms-key-event": patterns.KMS_KEY_EVENT,
    "ecr-image-scan": patterns.ECR_IMAGE_SCAN,
    "flow-log-object": patterns.FLOW_LOG_OBJECT,
}


def _route(aws_session: Any, events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Put every event on a bus whose rules target one SQS queue per subscription; return ids per queue."""
    bridge, sqs = aws_session.client("events"), aws_session.client("sqs")
    queues = {}
    for name, pattern in SUBSCRIPTIONS.items():
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bridge.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        bridge.put_targets(Rule=name, Targets=[{"Id": name, "Arn": arn}])
        queues[name] = url
    for event in events:
        entry = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"]),
            "Resources": event.get("resources", []),
        }
        assert bridge.put_events(Entries=[entry])["FailedEntryCount"] == 0
    routed: dict[str, list[str]] = {}
    for name, url in queues.items():
        bodies = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                body = json.loads(message["Body"])
                detail = body["detail"]
                key = (detail.get("object") or {}).get("key")
                bodies.append(str(detail.get("id") or detail.get("eventName") or detail.get("key-id") or key or detail))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        routed[name] = bodies
    return routed


def test_guardduty_findings_reach_only_the_guardduty_function(aws_session: Any) -> None:
    events = [e for p in sorted((EVENTS / "guardduty").glob("*.json")) for e in split_document(load_json(p))]
    events += split_document(load_json(GUARDDUTY_SAMPLES / "Backdoor_EC2_CandCActivity.B_DNS.eventbridge.json"))
    routed = _route(aws_session, events)
    assert sorted(routed["guardduty"]) == sorted(e["detail"]["id"] for e in events)
    assert routed["kms-api-call"] == []
    assert routed["kms-key-event"] == []
    assert routed["ecr-image-scan"] == []


def test_kms_tampering_and_key_events_reach_the_kms_functions(aws_session: Any) -> None:
    bare = SAMPLES / "kms" / "bare"
    names = ["ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy", "CreateGrant", "Decrypt", "GetKeyPolicy", "EnableKey"]
    events = [split_document(load_json(bare / f"CloudTrail_{n}.json"))[0] for n in names]
    events += [load_json(SAMPLES / "kms" / n) for n in ("KMS_CMK_Deletion.json", "KMS_CMK_Rotation.json")]
    routed = _route(aws_session, events)
    assert sorted(routed["kms-api-call"]) == ["CreateGrant", "DisableKey", "PutKeyPolicy", "ScheduleKeyDeletion"]
    assert routed["kms-key-event"] == ["1234abcd-12ab-34cd-56ef-1234567890ab"]
    assert routed["guardduty"] == []


def test_basic_scan_results_reach_the_image_function_only(aws_session: Any) -> None:
    names = (
        "ECR_Image_Scan_basic_COMPLETE.json",
        "ECR_Image_Action_PUSH.json",
        "Inspector2_Scan_ECR_INITIAL_SCAN_COMPLETE.json",
    )
    events = [load_json(SAMPLES / "ecr" / name) for name in names]
    routed = _route(aws_session, events)
    assert len(routed["ecr-image-scan"]) == 1
    assert routed["guardduty"] == routed["kms-api-call"] == []


def _object_created(key: str) -> dict[str, Any]:
    """S3's EventBridge notification, as the S3 user guide documents it."""
    return {"source": "aws.s3", "detail-type": "Object Created", "resources": ["arn:aws:s3:::flow-logs"],
            "detail": {"version": "0", "bucket": {"name": "flow-logs"}, "object": {"key": key, "size": 1024},
                       "reason": "PutObject"}}  # fmt: skip


def test_delivered_flow_log_objects_reach_the_flow_log_function_only(aws_session: Any) -> None:
    flow_key = (
        "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/28/"
        "123456789012_vpcflowlogs_us-east-1_fl-1_20261128T0900Z_ab12.log.gz"
    )
    alb_key = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/123456789012_elb_web_1.log.gz"
    hive_key = ("logs/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
                "123456789012_vpcflowlogs_us-east-1_fl-1_20261128T0900Z_cd34.log.gz")  # fmt: skip
    events = [_object_created(flow_key), _object_created("reports/2026/summary.csv"), _object_created(alb_key),
              _object_created("app/2026/11/28/server.log.gz"), _object_created(hive_key),
              load_json(SAMPLES / "ecr" / "ECR_Image_Scan_basic_COMPLETE.json")]  # fmt: skip
    routed = _route(aws_session, events)
    assert routed["flow-log-object"] == [flow_key, hive_key]
    assert routed["guardduty"] == routed["kms-api-call"] == []


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge's documented matching, for the one pattern moto cannot run: a field that holds a
    list of objects matches when any object does (moto's matcher does not descend into lists)."""
    if isinstance(event, list):
        return any(_matches(pattern, item) for item in event)
    for key, wanted in pattern.items():
        if key == "$or":
            if not any(_matches(p, event) for p in wanted):
                return False
        elif isinstance(wanted, dict):
            if not isinstance(event, dict) or key not in event or not _matches(wanted, event[key]):
                return False
        else:
            value = event.get(key) if isinstance(event, dict) else None
            values = value if isinstance(value, list) else [value]
            if not any(v in wanted for v in values):
                return False
    return True


def test_only_guardduty_findings_in_security_hub_reach_the_security_hub_function() -> None:
    pattern = patterns.SECURITYHUB_GUARDDUTY_FINDING
    copies = [load_json(p) for p in sorted((EVENTS / "securityhub").glob("*.json"))]
    assert len(copies) == 4
    assert all(_matches(pattern, c) for c in copies)
    ec2_inspector = json.loads(json.dumps(copies[1]))  # Inspector on an EC2 instance: not the responder's
    ec2_inspector["detail"]["findings"][0]["Resources"][0]["Type"] = "AwsEc2Instance"
    ocsf_ec2_inspector = json.loads(json.dumps(copies[3]))  # the same, in the OCSF form
    ocsf_ec2_inspector["detail"]["findings"][0]["resources"][0]["type"] = "AWS::EC2::Instance"
    config = json.loads(json.dumps(copies[0]))  # an AWS Config finding, in both forms: not ours
    config["detail"]["findings"][0].update(ProductName="Config", ProductArn="arn:aws:securityhub:::product/aws/config")
    ocsf_config = json.loads(json.dumps(copies[2]))
    ocsf_config["detail"]["findings"][0]["metadata"]["product"]["name"] = "Config"
    native = load_json(EVENTS / "guardduty" / "execution-runtime-reverse-shell.json")
    assert not any(_matches(pattern, e) for e in (config, ocsf_config, native, ec2_inspector, ocsf_ec2_inspector))
    # and the reference matcher agrees with moto's where moto can judge (no lists of objects)
    assert _matches(patterns.GUARDDUTY_FINDING, native)
    assert not _matches(patterns.GUARDDUTY_FINDING, copies[0])
