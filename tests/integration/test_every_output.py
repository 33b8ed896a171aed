"""One incident, through the Lambda handler on the local stack, to every output at once; and the
same with every service down: containment never waits for, nor depends on, a delivery."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client as ChaliceClient
from lightkube import Client
from lightkube.resources.core_v1 import Pod

import app
from chalicelib.entry import wiring
from chalicelib.interfaces import QUARANTINE_LABEL
from devstack import stand_ins
from devstack.stack import LocalStack
from tests.conftest import ROOT, load_event
from tests.integration.conftest import Cluster
from tests.integration.outputs import OUTPUTS_ENV, secret

pytestmark = pytest.mark.integration
BUCKET = "eks-responder-evidence-demo"


@pytest.fixture
def every_output(local_stack: LocalStack, aws_session: Any, monkeypatch: pytest.MonkeyPatch,
                 tmp_path: Path) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A prod stage with every output configured: stand-ins for the HTTP services,
    moto for SNS and EventBridge (each with an SQS subscriber), stand-ins for the write-back."""
    for key, value in local_stack.env().items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=local_stack.moto_url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    servers = {"pagerduty": stand_ins.pagerduty(), "teams": stand_ins.teams(), "webhook": stand_ins.receiver("k")}
    servers["servicenow"], tickets = stand_ins.servicenow("u", "p")
    servers["securityhub"], hub = stand_ins.security_hub()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECURITYHUB", servers["securityhub"].url)
    sns, sqs, events = aws_session.client("sns"), aws_session.client("sqs"), aws_session.client("events")
    queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("sns", "bus")}
    arns = {n: sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for n, q in queues.items()}  # fmt: skip
    topic = sns.create_topic(Name="incidents")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arns["sns"])
    bus = OUTPUTS_ENV["EVENT_BUS_NAME"]
    events.create_event_bus(Name=bus)
    events.put_rule(Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["eks-responder"]}))
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arns["bus"]}])
    named = OUTPUTS_ENV  # the secret and bus names the IAM proof's stage grants
    env = {
        **named, "EVIDENCE_BUCKET": BUCKET, "SNS_TOPIC_ARN": topic,
        "PAGERDUTY_EVENTS_URL": servers["pagerduty"].url + "/v2/enqueue",
        "WEBHOOK_URL": servers["webhook"].url + "/hook",
        "SERVICENOW_INSTANCE_URL": servers["servicenow"].url,
        "ARCHIVE_GUARDDUTY_FINDINGS": "false",
    }  # fmt: skip
    secret(aws_session, "0123456789abcdef0123456789abcdef", named["PAGERDUTY_ROUTING_KEY_SECRET"])
    secret(aws_session, servers["teams"].url + "/workflows/abc?sig=s", named["TEAMS_WEBHOOK_SECRET"])
    secret(aws_session, "k", named["WEBHOOK_SIGNING_SECRET"])
    secret(aws_session, json.dumps({"username": "u", "password": "p"}), named["SERVICENOW_CREDENTIALS_SECRET"])
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["prod"]["environment_variables"].update(env)
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    wiring.reset()
    yield {"project": tmp_path, "servers": servers, "tickets": tickets, "hub": hub, "sqs": sqs, "queues": queues}
    wiring.responder().close()
    wiring.reset()
    for server in servers.values():
        server.close()


def _event(namespace: str, pod: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("execution-runtime-reverse-shell"))
    workload = event["detail"]["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"]
    workload.update({"name": pod, "namespace": namespace})
    event["detail"]["id"] = f"outputs{namespace.replace('-', '')}"[:32]
    del event["detail"]["resource"]["instanceDetails"]
    return event


def _messages(sqs: Any, queue: str) -> list[dict[str, Any]]:
    found = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        found += [json.loads(m["Body"]) for m in batch]
        for message in batch:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found


def _invoke(project: Path, event: dict[str, Any]) -> dict[str, Any]:
    with ChaliceClient(app.app, stage_name="prod", project_dir=str(project)) as client:
        payload: dict[str, Any] = client.lambda_.invoke("on_guardduty_finding", event).payload
    return payload


def test_one_incident_reaches_every_output(every_output: dict[str, Any], cluster: Cluster, admin: Client) -> None:
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    payload = _invoke(every_output["project"], _event(cluster.namespace, pod))
    assert (admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {}).get(QUARANTINE_LABEL) == "true"
    told = {d["notifier"]: d["delivered"] for d in payload["notifications"]}
    assert told == dict.fromkeys(("teams", "pagerduty", "sns", "eventbridge", "webhook", "servicenow", "securityhub"),
                                 True)  # fmt: skip
    servers = every_output["servers"]
    for name, server in servers.items():
        assert server.refused == [], name
        assert len(server.received) >= 1, name
    incident = payload["incident"]["id"]
    assert servers["pagerduty"].bodies()[0]["dedup_key"] == incident
    (ticket,) = every_output["tickets"].records.values()
    assert ticket["correlation_id"] == f"eks-responder:{incident}"
    (update,) = every_output["hub"].of("BatchUpdateFindings")
    assert update["Workflow"] == {"Status": "NOTIFIED"}
    bus = _messages(every_output["sqs"], every_output["queues"]["bus"])
    assert len(bus) == 1 + len(payload["actions"])
    (sns,) = _messages(every_output["sqs"], every_output["queues"]["sns"])
    assert json.loads(sns["Message"])["incident"]["id"] == incident


def test_with_every_service_down_the_pod_is_still_contained_and_it_is_said_once(
    every_output: dict[str, Any], cluster: Cluster, admin: Client
) -> None:
    for server in every_output["servers"].values():
        server.fail_next(10, status=503)
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    payload = _invoke(every_output["project"], _event(cluster.namespace, pod))
    assert (admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {}).get(QUARANTINE_LABEL) == "true"
    failed = sorted(d["notifier"] for d in payload["notifications"] if not d["delivered"])
    assert failed == ["pagerduty", "securityhub", "servicenow", "teams", "webhook"]
    report, alert = _messages(every_output["sqs"], every_output["queues"]["sns"])
    assert alert["Subject"] == f"[DELIVERY FAILED] {payload['incident']['id']}"
    said = json.loads(alert["Message"])["error"]
    assert all(name in said for name in failed)
    assert json.loads(report["Message"])["actions"] == payload["actions"]
