"""A Lambda invocation killed at each step boundary (SIGKILL: a new process, killed for real), then
the same event delivered again as Lambda does, 1 and 3 minutes later: every finding contained
exactly once, one audit line per step, one message.

The first redelivery comes while the dead invocation's exactly-once record is still in progress
(it expires with the invocation's timeout): it fails, so Lambda tries again. The second takes
over and finishes what the dead one did not, resuming after the steps it had kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from chalicelib.entry import wiring
from chalicelib.interfaces import QUARANTINE_LABEL
from devstack import drills
from devstack.stack import LocalStack
from tests.integration.conftest import Cluster, create_incidents_table

pytestmark = pytest.mark.integration
BUCKET = "eks-responder-evidence-demo"
# The compromised-pod playbook as shipped: label, capture, isolate, the pod's ENI, two steps for a human.
STEPS = 6


@pytest.fixture
def deployed(
    local_stack: LocalStack, aws_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The stage's resources on moto (the incident table, the evidence bucket, an SNS topic read
    through an SQS queue) and the environment the function runs with."""
    create_incidents_table(aws_session)
    aws_session.client("s3").create_bucket(Bucket=BUCKET)
    sns, sqs = aws_session.client("sns"), aws_session.client("sqs")
    topic = sns.create_topic(Name="incidents")["TopicArn"]  # the topic the IAM proof's stage names
    queue = sqs.create_queue(QueueName="alerts-read-back")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    env = {**local_stack.env(), "DRY_RUN": "false", "INCIDENTS_TABLE": "eks-responder-incidents",
           "EVIDENCE_BUCKET": BUCKET, "SNS_TOPIC_ARN": topic}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    wiring.reset()
    yield {"env": env, "sqs": sqs, "queue": queue, "workdir": tmp_path}
    wiring.responder().close()
    wiring.reset()


def _messages(deployed: dict[str, Any]) -> list[str]:
    found: list[str] = []
    while True:
        batch = deployed["sqs"].receive_message(QueueUrl=deployed["queue"], MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        found.extend(m["Body"] for m in batch)


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [{"message": r.getMessage(), **r.__dict__} for r in caplog.records if r.name == "eks_responder"]


@pytest.mark.parametrize("boundary", drills.boundaries(STEPS))
def test_killed_at_a_step_boundary_then_delivered_again_contains_once_with_one_line_per_step_and_one_message(
    boundary: str, cluster: Cluster, admin: Client, deployed: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eks_responder")
    pod = cluster.pod("web", cluster.node("node-a", "i-0aaa"))
    event = drills.pod_event(cluster.namespace, pod, f"crash-{boundary.replace(':', '-')}")

    drill = drills.kill_and_redeliver(event, boundary, deployed["env"], deployed["workdir"], lambda: _lines(caplog))
    assert drill.code == drills.KILLED, drill.killed_lines[-3:]
    if boundary == "told":  # all was done, recorded and told: a duplicate, whenever it comes
        assert isinstance(drill.retry, dict)
        assert drill.retry["duplicate"]
    else:  # the dead invocation's record holds until its timeout: Lambda is told to try again
        assert isinstance(drill.retry, str)
        assert drill.retry.startswith("RetryLaterError: incident"), drill.retry
        assert "being handled by another invocation" in drill.retry
    assert not drill.final.get("error"), drill.final

    incident_id = next(line["incident_id"] for line in drill.lines if line.get("message") == "action")
    assert drill.steps_logged(incident_id) == list(range(1, STEPS + 1)), "one audit line per step"
    assert drill.incident_lines(incident_id) == 1

    labels = admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {}
    assert labels.get(QUARANTINE_LABEL) == "true"
    policies = [p.metadata.name for p in admin.list(NetworkPolicy, namespace=cluster.namespace)]
    assert len(policies) == 1, policies  # isolated once
    messages = _messages(deployed)
    assert len(messages) == 1, [m[:120] for m in messages]

    # Each step the dead invocation carried out is reported as done by it, never done again.
    if boundary == "told":
        assert drill.final["duplicate"]
    elif boundary == "recorded":
        assert "told by a redelivery" in " ".join(drill.final["notes"])
    else:
        carried, reported = drill.done_by_the_dead()
        assert reported == carried
