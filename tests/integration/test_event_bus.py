"""The responder's own events: put on a bus (moto's EventBridge), delivered by a rule to SQS, and
each detail as the published schema says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.notifiers import events_out
from chalicelib.notifiers.base import notify
from devstack.stand_ins import load_schema, schema_errors
from tests import reports
from tests.integration.outputs import built

pytestmark = pytest.mark.integration
BUS = "security-events"


def _subscribed(aws_session: Any, pattern: dict[str, Any]) -> tuple[Any, str]:
    events, sqs = aws_session.client("events"), aws_session.client("sqs")
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="to-queue", EventBusName=BUS, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="to-queue", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    return sqs, queue


def _drained(sqs: Any, queue: str) -> list[dict[str, Any]]:
    found = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        found += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                          for i, m in enumerate(batch)])  # fmt: skip
    return found


def test_every_incident_step_approval_and_release_reaches_a_subscriber(aws_session: Any) -> None:
    sqs, queue = _subscribed(aws_session, {"source": ["eks-responder"]})
    (notifier,) = built({"EVENT_BUS_NAME": BUS}, aws_session)
    sent = [reports.live(), reports.approved(), reports.released(), reports.rejected()]
    for report in sent:
        (delivery,) = notify(report, [notifier])
        assert delivery.delivered, delivery.error
    received = _drained(sqs, queue)
    steps = sum(len(r.get("actions") or []) for r in sent)
    assert len(received) == len(sent) + steps
    schema = load_schema("event-detail")
    assert [schema_errors(e["detail"], schema) for e in received] == [[]] * len(received)
    kinds = sorted(e["detail"]["kind"] for e in received if e["detail-type"] != "EKS Responder Step")
    assert kinds == ["approval", "incident", "rejected", "release"]
    assert {e["source"] for e in received} == {"eks-responder"}
    incident = next(e for e in received if e["detail-type"] == "EKS Responder Incident")
    assert incident["resources"] == [sent[0]["incident"]["finding_arn"]]


def test_a_subscriber_can_take_only_the_failed_steps(aws_session: Any) -> None:
    sqs, queue = _subscribed(aws_session, {"source": ["eks-responder"], "detail-type": ["EKS Responder Step"],
                                           "detail": {"step": {"status": ["failed"]}}})  # fmt: skip
    (notifier,) = built({"EVENT_BUS_NAME": BUS}, aws_session)
    notify(reports.live(), [notifier])
    failed = reports.live(status="failed")
    notify(failed, [notifier])
    received = _drained(sqs, queue)
    assert len(received) == len(failed["actions"])
    assert {e["detail"]["step"]["status"] for e in received} == {"failed"}


def test_the_responders_own_rules_never_match_its_events() -> None:
    # Its events can never feed back into it: no subscription takes its source, and none of its
    # detail types is the (directly invoked) carry-out event's.
    from chalicelib.entry import decisions
    from chalicelib.sources import patterns

    subscribed = [v for v in vars(patterns).values() if isinstance(v, dict) and "source" in v]
    assert len(subscribed) >= 7
    assert all(events_out.SOURCE not in v["source"] for v in subscribed)
    assert decisions.CARRY_OUT not in events_out.DETAIL_TYPES.values()
