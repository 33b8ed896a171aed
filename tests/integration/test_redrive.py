"""`eks-responder redrive`: the failure queue's events shown, replayed through their own path, and
deleted only once handled."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from chalicelib.commands.cli import main
from chalicelib.entry import wiring
from tests.conftest import load_event

pytestmark = pytest.mark.integration
QUEUE = "eks-responder-local-failures"


def _on_failure_record(event: dict[str, Any], function: str, error: str) -> str:
    """What Lambda's on-failure destination puts in the queue (the asynchronous invocation record)."""
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:eks-responder-local-{function}:$LATEST"
    return json.dumps({
        "version": "1.0", "timestamp": "2026-12-07T08:40:00.000Z",
        "requestContext": {"requestId": "r-1", "condition": "RetriesExhausted", "approximateInvokeCount": 3,
                           "functionArn": arn},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "RetryLaterError", "errorMessage": error},
    })  # fmt: skip


@pytest.fixture
def parked(aws_session: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    sqs = aws_session.client("sqs")
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    finding = load_event("execution-runtime-suspicious-shell-created-low")
    sqs.send_message(QueueUrl=url, MessageBody=_on_failure_record(finding, "on_guardduty_finding", "timed out"))
    dead_letter = copy.deepcopy(finding)
    dead_letter["id"] = "dead-letter-1"
    dead_letter["detail"]["id"] = "another-finding-id-0001"
    arn = "arn:aws:lambda:us-east-1:123456789012:function:eks-responder-local-on_guardduty_finding"
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(dead_letter), MessageAttributes={
        "RULE_ARN": {"DataType": "String", "StringValue": "arn:aws:events:us-east-1:123456789012:rule/x"},
        "TARGET_ARN": {"DataType": "String", "StringValue": arn},
        "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
        "ERROR_MESSAGE": {"DataType": "String", "StringValue": "Lambda is unavailable"},
        "EXHAUSTED_RETRY_CONDITION": {"DataType": "String", "StringValue": "MaximumEventAgeInSeconds"},
    })  # fmt: skip
    sqs.send_message(QueueUrl=url, MessageBody="not json at all")
    monkeypatch.setenv("DRY_RUN", "true")
    wiring.reset()
    return {"sqs": sqs, "url": url}


def _depth(parked: dict[str, Any]) -> int:
    attributes = parked["sqs"].get_queue_attributes(QueueUrl=parked["url"], AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_dry_run_lists_what_waits_and_why_and_deletes_nothing(
    parked: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--dry-run", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_kind = {found["kind"]: found for found in listed}
    assert set(by_kind) == {"lambda", "rule", "unknown"}
    assert by_kind["lambda"]["function"] == "on_guardduty_finding"
    assert by_kind["lambda"]["why"] == "RetriesExhausted after 3 attempt(s): RetryLaterError: timed out"
    assert by_kind["rule"]["event_id"] == "dead-letter-1"
    assert "SDK_CLIENT_ERROR: Lambda is unavailable; MaximumEventAgeInSeconds" in by_kind["rule"]["why"]
    assert {found["outcome"] for found in listed} == {"listed"}
    assert _depth(parked) == 3


def test_each_event_is_replayed_through_its_handler_and_deleted_only_once_handled(
    parked: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["redrive", "--local"]) == 1  # the unreadable message is kept: exit 1
    said = capsys.readouterr().out
    assert said.count("replayed: handled, deleted from the queue") == 2
    assert "kept: no function to replay it in" in said
    assert said.rstrip().endswith("3 in " + parked["url"] + ": 2 replayed, 1 kept")
    assert _depth(parked) == 1

    # A replay that fails again keeps its message for the next run.
    finding = load_event("execution-runtime-suspicious-shell-created-low")
    parked["sqs"].send_message(QueueUrl=parked["url"], MessageBody=_on_failure_record(finding, "on_guardduty_finding",
                                                                                     "x"))  # fmt: skip

    def still_down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the API server is down")

    monkeypatch.setattr(wiring, "handle_event", still_down)
    assert main(["redrive", "--local"]) == 1
    assert "still failing, kept: ConnectionError: the API server is down" in capsys.readouterr().out
    assert _depth(parked) == 2
