"""The deployed dashboard and alarms (the step `make deploy` runs after `chalice deploy`), against
the local AWS endpoint, and checked against the metrics the code really emits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib import functions
from chalicelib.notifiers import metrics
from deploy import dashboard

pytestmark = pytest.mark.integration
TOPIC_NAME = "eks-responder-test-incidents"


def _queried(body: dict[str, Any]) -> set[tuple[str, tuple[str, ...]]]:
    """(metric name, dimension names) of every line of every widget."""
    found = set()
    for widget in body["widgets"]:
        for line in widget["properties"]["metrics"]:
            first = line[0]
            if isinstance(first, dict):
                match = re.match(r"^SEARCH\('\{([\w/]+),([\w,]+)\} MetricName=\"(\w+)\"", first["expression"])
                assert match, first["expression"]
                if match.group(1) in AWS_NAMESPACES:  # the services' own delivery metrics
                    continue
                assert match.group(1) == metrics.NAMESPACE
                found.add((match.group(3), tuple(match.group(2).split(","))))
            elif first not in AWS_NAMESPACES:
                assert first == metrics.NAMESPACE
                found.add((line[1], tuple(line[2:-1:2])))
    return found


AWS_NAMESPACES = {"AWS/Lambda", "AWS/SQS", "AWS/Events"}


def _emitted(capsys: pytest.CaptureFixture[str]) -> set[tuple[str, tuple[str, ...]]]:
    """Run every path that emits a metric, and read back what Powertools wrote (EMF)."""
    capsys.readouterr()
    live = {"incident": {"source": "guardduty", "severity": "high"}, "mode": "live", "time_to_contain_seconds": 12.5,
            "actions": [{"action": "k8s:isolate-pod", "status": "succeeded"},
                        {"action": "ec2:isolate-instance", "status": "failed"},
                        {"action": "iam:revoke-role-sessions", "status": "awaiting-approval"}]}  # fmt: skip
    metrics.report(live)
    metrics.report({"error": "not an event"})
    metrics.report({"duplicate": True, "incident_id": "x"})
    metrics.notifier_failure("slack")
    metrics.flow_delivery({"records": 10, "malformed": 1, "nodata_or_skipdata": 2, "incidents": 1, "error": "cut"})
    found = set()
    for line in capsys.readouterr().out.splitlines():
        if line.startswith('{"_aws"'):
            emf = json.loads(line)["_aws"]["CloudWatchMetrics"][0]
            assert emf["Namespace"] == metrics.NAMESPACE
            found.add((emf["Metrics"][0]["Name"], tuple(emf["Dimensions"][0])))
    return found


def test_every_metric_the_code_emits_has_a_graph_and_every_graph_a_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EKS_RESPONDER_METRICS", "on")
    emitted = _emitted(capsys)
    declared = {(name, dims) for name, (_, dims) in metrics.EMITTED.items()}
    assert emitted == declared  # every declared metric is really emitted, with those dimensions
    assert _queried(dashboard.dashboard("us-east-1")) == declared


def test_make_deploy_creates_the_dashboard_and_the_alarms(aws_session: Any) -> None:
    topic = aws_session.client("sns").create_topic(Name=TOPIC_NAME)["TopicArn"]
    done = dashboard.apply(aws_session, "test", topic)
    cloudwatch = aws_session.client("cloudwatch")
    body = json.loads(cloudwatch.get_dashboard(DashboardName="eks-responder-test")["DashboardBody"])
    assert body == dashboard.dashboard("us-east-1", "test")
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Time to contain (seconds): p50, p90, max" in titles
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(done["alarms"]) == set(alarms)
    failed = alarms["eks-responder-test-FailedActions"]
    assert (failed["Namespace"], failed["MetricName"], failed["Threshold"]) == (metrics.NAMESPACE, "FailedActions", 1)
    assert failed["AlarmActions"] == [topic]
    assert "eks-responder-test-RejectedEvents" in alarms
    lambda_errors = {a["Dimensions"][0]["Value"] for a in alarms.values() if a["MetricName"] == "Errors"}
    assert lambda_errors == {f"eks-responder-test-{f.name}" for f in functions.FUNCTIONS}
    assert "eks-responder-test-failure-queue" in alarms  # and the delivery alarms (tests/integration/test_delivery.py)
    # run again: the same dashboard and alarms, nothing added
    dashboard.apply(aws_session, "test", topic)
    assert len(cloudwatch.describe_alarms()["MetricAlarms"]) == len(alarms)
