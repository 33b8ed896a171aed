"""Telling people: one Slack message (through a webhook on loopback) and one SNS message (moto) per event."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from chalice.test import Client as ChaliceClient

import app
from chalicelib.entry import wiring
from chalicelib.settings import DEFAULT_RULES_FILE
from devstack.stack import LocalStack
from tests.conftest import ROOT, SAMPLES, load_event, load_json
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


class Webhook:
    """A Slack incoming webhook stand-in on loopback: it records what it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def wired(local_stack: LocalStack, aws_session: Any, webhook: Webhook, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A deployed-like stage: the webhook URL in Secrets Manager, an SNS topic with an SQS subscriber."""
    secrets = aws_session.client("secretsmanager")
    secrets.create_secret(Name="eks-responder/slack", SecretString=webhook.url)
    sns, sqs = aws_session.client("sns"), aws_session.client("sqs")
    topic = sns.create_topic(Name="incidents")["TopicArn"]
    queue = sqs.create_queue(QueueName="incidents")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["dev"]["environment_variables"].update(
        {"SLACK_WEBHOOK_SECRET": "eks-responder/slack", "SNS_TOPIC_ARN": topic}
    )
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    wiring.reset()
    yield {"project": tmp_path, "sqs": sqs, "queue": queue}
    wiring.reset()


def _sns_messages(sqs: Any, queue: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_one_slack_and_one_sns_message_per_event(wired: dict[str, Any], webhook: Webhook) -> None:
    event = load_event("execution-runtime-suspicious-shell-created-low")
    event["detail"]["title"] = "shell <!channel> <@U024BE7LH> <https://evil.example|click>"
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(wired["project"])) as client:
        response = client.lambda_.invoke("on_guardduty_finding", event)
    assert response.payload["notifications"] == [
        {"notifier": "slack", "delivered": True, "error": None, "attempts": 1},
        {"notifier": "sns", "delivered": True, "error": None, "attempts": 1},
    ]
    (slack,) = webhook.received
    body = json.dumps(slack)
    assert "<!channel>" not in body
    assert "&lt;!channel&gt; &lt;@U024BE7LH&gt; &lt;https://evil.example|click&gt;" in body
    (sns,) = _sns_messages(wired["sqs"], wired["queue"])
    assert sns["Subject"] == "[DRY-RUN] [LOW] Execution:Runtime/SuspiciousShellCreated demo"
    assert sns["MessageAttributes"]["severity"]["Value"] == "low"
    assert sns["MessageAttributes"]["dry_run"]["Value"] == "true"
    assert json.loads(sns["Message"])["incident"]["id"] == event["detail"]["id"]


def test_a_rejected_event_is_alerted_on(wired: dict[str, Any], webhook: Webhook) -> None:
    bad = {"id": "e-broken", "source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {"type": 1}}
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(wired["project"])) as client:
        response = client.lambda_.invoke("on_guardduty_finding", bad)
    assert "error" in response.payload
    assert "Rejected event `e-broken`" in webhook.received[0]["text"]
    (sns,) = _sns_messages(wired["sqs"], wired["queue"])
    assert sns["Subject"] == "[REJECTED EVENT] e-broken"


def test_an_unreachable_webhook_is_retried_once_and_sns_still_sent(wired: dict[str, Any], webhook: Webhook) -> None:
    webhook.close()  # nothing listens any more
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(wired["project"])) as client:
        response = client.lambda_.invoke(
            "on_guardduty_finding", load_event("execution-runtime-suspicious-shell-created-low")
        )
    slack, sns = response.payload["notifications"]
    assert (slack["delivered"], slack["attempts"]) == (False, 2)
    assert sns["delivered"] is True
    report, alert = _sns_messages(wired["sqs"], wired["queue"])  # the report, then the one alert saying so
    assert alert["Subject"].startswith("[DELIVERY FAILED] ")
    assert "not told to slack" in json.loads(alert["Message"])["error"]
    assert json.loads(report["Message"])["incident"]["type"] == "Execution:Runtime/SuspiciousShellCreated"


@pytest.fixture
def with_table(wired: dict[str, Any], aws_session: Any) -> dict[str, Any]:
    dynamodb = aws_session.client("dynamodb")
    dynamodb.create_table(
        TableName="eks-responder-incidents",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    config_path = wired["project"] / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["INCIDENTS_TABLE"] = "eks-responder-incidents"
    config_path.write_text(json.dumps(config))
    wiring.reset()
    return {**wired, "dynamodb": dynamodb}


def _invoke(project: Path, event: dict[str, Any]) -> dict[str, Any]:
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(project)) as client:
        payload: dict[str, Any] = client.lambda_.invoke("on_guardduty_finding", event).payload
        return payload


def test_the_same_finding_three_times_acts_and_tells_once(
    with_table: dict[str, Any], webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event("execution-runtime-reverse-shell")
    first = _invoke(with_table["project"], event)
    caplog.set_level(logging.INFO, logger="eks_responder")
    assert first["rule"] == "compromised-pod"
    pod_playbook = ["k8s:label-pod", "k8s:capture-pod", "k8s:isolate-pod", "ec2:isolate-pod-eni",
                    "eks:delete-pod-identity-association", "iam:revoke-role-sessions"]  # fmt: skip
    assert [a["action"] for a in first["actions"]] == pod_playbook
    # EventBridge redelivers, and GuardDuty re-publishes with a higher count and the same severity.
    again = _invoke(with_table["project"], event)
    republished = copy.deepcopy(event)
    republished["id"] = "another-delivery"
    republished["detail"]["service"]["count"] = 7
    third = _invoke(with_table["project"], republished)
    assert again["duplicate"] is True
    assert third["duplicate"] is True
    assert "already handled at severity high" in third["reason"]
    assert "actions" not in again
    assert "actions" not in third
    assert len(webhook.received) == 1
    assert len(_sns_messages(with_table["sqs"], with_table["queue"])) == 1
    # Each copy is logged with what JSON can hold (the steps done are keyed by action and target: a
    # line carrying them is lost to the log formatter).
    duplicates = [r for r in caplog.records if r.getMessage() == "duplicate incident"]
    assert [getattr(r, "event_id", None) for r in duplicates] == [event["id"], "another-delivery"]
    for logged in duplicates:
        json.dumps({key: value for key, value in vars(logged).items() if key not in ("args", "exc_info")}, default=str)
    record = with_table["dynamodb"].get_item(
        TableName="eks-responder-incidents", Key={"id": {"S": f"incident#{event['detail']['id']}"}}
    )["Item"]
    assert json.loads(record["report"]["S"])["rule"] == "compromised-pod"


def test_a_higher_severity_re_evaluates_and_a_lower_one_does_not(with_table: dict[str, Any], webhook: Webhook) -> None:
    event = load_event("execution-runtime-suspicious-shell-created-low")
    _invoke(with_table["project"], event)
    higher = copy.deepcopy(event)
    higher["detail"]["severity"] = 8
    escalated = _invoke(with_table["project"], higher)
    assert escalated["rule"] == "compromised-pod"  # re-evaluated: no longer report-only
    lower = copy.deepcopy(event)
    lower["detail"]["severity"] = 5
    assert _invoke(with_table["project"], lower)["duplicate"] is True
    assert len(webhook.received) == 2


def test_without_the_table_it_still_acts_and_says_so(wired: dict[str, Any], webhook: Webhook) -> None:
    config_path = wired["project"] / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["INCIDENTS_TABLE"] = "no-such-table"
    config_path.write_text(json.dumps(config))
    wiring.reset()
    result = _invoke(wired["project"], load_event("execution-runtime-suspicious-shell-created-low"))
    assert result["exactly_once"] is False
    assert result["rule"] == "report-low-severity"
    assert len(webhook.received) == 1


def test_emf_metrics_count_incidents_actions_and_notifier_failures(
    wired: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EKS_RESPONDER_METRICS", "on")
    webhook.close()
    _invoke(wired["project"], load_event("execution-runtime-reverse-shell"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] for m in lines}
    assert names >= {"Incidents", "Actions", "NotifierFailures"}
    incident = next(m for m in lines if "Incidents" in m)
    assert (incident["source"], incident["severity"]) == ("guardduty", "high")
    assert incident["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EKSResponder"


def test_an_accepted_cve_is_not_told_and_does_not_hide_the_next_cve_of_the_image(
    with_table: dict[str, Any], webhook: Webhook
) -> None:
    rules = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    rules["accepted_risks"] = [
        {"cve": "CVE-2024-6119", "repositories": ["inspector2"], "expires": "2999-12-31", "reason": "not reachable"}
    ]
    rules_file = with_table["project"] / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    config_path = with_table["project"] / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["RULES_FILE"] = str(rules_file)
    config_path.write_text(json.dumps(config))
    wiring.reset()
    event = load_json(SAMPLES / "ecr" / "Inspector2_Finding_ECR_PACKAGE_VULNERABILITY.2024-doc.json")
    event["detail"]["severity"] = "CRITICAL"
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(with_table["project"])) as client:
        first = client.lambda_.invoke("on_inspector_finding", event).payload
        assert first["rule"] is None
        assert "CVE-2024-6119 is an accepted risk in inspector2 until 2999-12-31: not reachable" in first["reason"]
        assert webhook.received == []
        other = copy.deepcopy(event)
        other["id"] = "another-cve"
        other["detail"]["packageVulnerabilityDetails"]["vulnerabilityId"] = "CVE-2099-0001"
        second = client.lambda_.invoke("on_inspector_finding", other).payload
        assert second["rule"] == "block-critical-image"
        assert "duplicate" not in second
        assert len(webhook.received) == 1
        assert client.lambda_.invoke("on_inspector_finding", other).payload["duplicate"] is True


def _as_the_stage(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment Lambda gives the dev stage's functions, for calling the handlers directly."""
    config = json.loads((project / ".chalice" / "config.json").read_text())
    for key, value in {**config["environment_variables"], **config["stages"]["dev"]["environment_variables"]}.items():
        monkeypatch.setenv(key, str(value))
    wiring.reset()


def _idempotency_records(dynamodb: Any) -> list[dict[str, Any]]:
    items = dynamodb.scan(TableName="eks-responder-incidents")["Items"]
    return [i for i in items if not i["id"]["S"].startswith(("incident#", "cap"))]


def test_exactly_once_is_powertools_idempotency_with_the_invocation_context(
    with_table: dict[str, Any], webhook: Webhook
) -> None:
    first = _invoke(with_table["project"], load_event("execution-runtime-reverse-shell"))
    assert "exactly_once" not in first  # no silent fallback: the idempotency layer ran
    (record,) = _idempotency_records(with_table["dynamodb"])
    assert record["status"]["S"] == "COMPLETED"
    assert "in_progress_expiration" in record  # bounded by the invocation's deadline
    stored = json.loads(record["data"]["S"])
    assert stored["rule"] == "compromised-pod"
    assert "incident" not in stored  # a bounded summary, never the whole report


def test_the_same_event_three_times_at_once_acts_and_tells_once(
    with_table: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.errors import RetryLaterError
    from chalicelib.invocation import LocalContext

    _as_the_stage(with_table["project"], monkeypatch)
    event = load_event("execution-runtime-reverse-shell")

    def invoke(_: int) -> dict[str, Any] | RetryLaterError:
        try:
            return wiring.handle_event(copy.deepcopy(event), LocalContext())
        except RetryLaterError as exc:  # the invocation fails: Lambda delivers the event again later
            return exc

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(invoke, range(3)))
    acted = [r for r in results if isinstance(r, dict) and "actions" in r]
    assert len(acted) == 1, results
    # The others are neither done nor suppressed: each failed while the first was in progress (or,
    # when it had finished already, is a duplicate of it).
    assert all(isinstance(r, RetryLaterError) or r.get("duplicate") for r in results if r is not acted[0])
    assert "exactly_once" not in acted[0]
    retried = wiring.handle_event(copy.deepcopy(event), LocalContext())  # Lambda's retry, a minute later
    assert retried["duplicate"] is True
    assert len(webhook.received) == 1
    assert len(_sns_messages(with_table["sqs"], with_table["queue"])) == 1


def _reverse_shell_in(cluster: Cluster) -> tuple[str, dict[str, Any]]:
    """A pod on a node of the local cluster, and a GuardDuty reverse-shell finding about it."""
    pod = cluster.pod("api", cluster.node("node-a", "i-0aaa"))
    event = load_event("execution-runtime-reverse-shell")
    details = event["detail"]["resource"]
    details["eksClusterDetails"]["name"] = "local"
    details["kubernetesDetails"]["kubernetesWorkloadDetails"].update(name=pod, namespace=cluster.namespace)
    return pod, event


class Crash(BaseException):
    """The invocation dies (timeout, out of memory): nothing after it runs, no cleanup."""


def test_a_crash_halfway_is_finished_by_the_redelivery_and_no_step_runs_twice(
    with_table: dict[str, Any],
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
    cluster: Cluster,
    local_stack: LocalStack,
) -> None:
    from chalicelib.actions.k8s.isolate_pod import IsolatePod
    from chalicelib.invocation import LocalContext

    _as_the_stage(with_table["project"], monkeypatch)
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("KUBECONFIG", str(local_stack.responder_kubeconfig))
    wiring.reset()
    _, event = _reverse_shell_in(cluster)
    original = IsolatePod.run

    def crash(*_: Any, **__: Any) -> Any:
        raise Crash

    monkeypatch.setattr(IsolatePod, "run", crash)
    with pytest.raises(Crash):
        wiring.handle_event(copy.deepcopy(event), LocalContext())  # captured (the label held), then it dies
    assert webhook.received == []
    # The dead invocation's deadline passes: its in-progress record expires with it.
    dynamodb = with_table["dynamodb"]
    for record in _idempotency_records(dynamodb):
        assert record["status"]["S"] == "INPROGRESS"
        dynamodb.update_item(TableName="eks-responder-incidents", Key={"id": record["id"]},
                             UpdateExpression="SET in_progress_expiration = :past",
                             ExpressionAttributeValues={":past": {"N": "1000"}})  # fmt: skip
    monkeypatch.setattr(IsolatePod, "run", original)
    again = wiring.handle_event(copy.deepcopy(event), LocalContext())  # EventBridge redelivers
    statuses = {a["action"]: a["status"] for a in again["actions"]}
    # The label was held for the isolation's request when the invocation died: never written, never
    # reported; the redelivery writes it, with the isolation, once.
    assert statuses == {"k8s:label-pod": "succeeded", "k8s:capture-pod": "skipped", "k8s:isolate-pod": "succeeded",
                        "ec2:isolate-pod-eni": "skipped", "eks:delete-pod-identity-association": "awaiting-approval",
                        "iam:revoke-role-sessions": "skipped"}  # fmt: skip
    assert "exactly_once" not in again
    assert len(webhook.received) == 1


def test_a_ledger_failure_after_the_work_never_runs_it_twice(
    with_table: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import DynamoDBPersistenceLayer

    def refuse(*_: Any, **__: Any) -> None:
        raise RuntimeError("Item size has exceeded the maximum allowed size")

    monkeypatch.setattr(DynamoDBPersistenceLayer, "save_success", refuse)
    result = _invoke(with_table["project"], load_event("execution-runtime-reverse-shell"))
    assert result["exactly_once"] is False
    assert result["rule"] == "compromised-pod"
    assert len(webhook.received) == 1
    assert len(_sns_messages(with_table["sqs"], with_table["queue"])) == 1


def _invoke_as(project: Path, function: str, event: dict[str, Any]) -> dict[str, Any]:
    with ChaliceClient(app.app, stage_name="dev", project_dir=str(project)) as client:
        payload: dict[str, Any] = client.lambda_.invoke(function, event).payload
        return payload


def test_a_security_hub_copy_and_its_native_twin_are_one_incident(with_table: dict[str, Any], webhook: Webhook) -> None:
    from tests.conftest import EVENTS, load_json

    project = with_table["project"]
    # the native finding first, then Security Hub's copy of it (ASFF): one incident, told once
    native = _invoke_as(project, "on_guardduty_finding", load_event("execution-runtime-reverse-shell"))
    assert native["rule"] == "compromised-pod"
    asff = load_json(EVENTS / "securityhub" / "asff-copy-of-execution-runtime-reverse-shell.json")
    twin = _invoke_as(project, "on_securityhub_finding", asff)
    assert (twin["duplicate"], twin["incident_id"]) == (True, native["incident"]["id"])
    # The copy first (OCSF), its native finding unreadable here (the local AWS endpoint has no
    # GetFindings): the copy is reported, not acted on, and not recorded, so the native event that
    # follows is acted on, never suppressed as its duplicate (a forged copy cannot silence it).
    ocsf = load_json(EVENTS / "securityhub" / "ocsf-copy-of-impact-runtime-crypto-miner-executed.json")
    first = _invoke_as(project, "on_securityhub_finding", ocsf)
    assert first["incident"]["source"] == "securityhub"
    assert first["incident"]["details"]["native"].startswith("not read (")
    assert first["incident"]["unverified"]
    assert {a["status"] for a in first["actions"]} <= {"planned"}
    second = _invoke_as(project, "on_guardduty_finding", load_event("impact-runtime-crypto-miner-executed-deployment"))
    assert "duplicate" not in second, second
    assert second["incident"]["id"] == first["incident"]["id"]
    assert second["rule"]
    assert second["actions"]
    assert len(webhook.received) == 3  # the native, the unverified copy (reported), the native after it


def test_the_rollout_dry_then_live_acts_on_the_same_finding(
    with_table: dict[str, Any],
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
    cluster: Cluster,
    local_stack: LocalStack,
) -> None:
    """The deploy checklist: a stage in DRY_RUN first, then DRY_RUN off. The dry run's record never
    makes the live run of the same finding a duplicate; a live record does make later runs repeats."""
    from lightkube.resources.core_v1 import Pod

    from chalicelib.invocation import LocalContext

    _as_the_stage(with_table["project"], monkeypatch)
    monkeypatch.setenv("KUBECONFIG", str(local_stack.responder_kubeconfig))
    wiring.reset()
    pod, event = _reverse_shell_in(cluster)

    def labels() -> dict[str, str]:
        return dict(cluster.admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {})

    dry = wiring.handle_event(copy.deepcopy(event), LocalContext())
    assert dry["mode"] == "dry-run"
    assert "follows_dry_run" not in dry
    assert "quarantine" not in " ".join(labels())
    assert wiring.handle_event(copy.deepcopy(event), LocalContext())["duplicate"] is True  # dry after dry

    monkeypatch.setenv("DRY_RUN", "false")
    wiring.reset()
    live = wiring.handle_event(copy.deepcopy(event), LocalContext())
    assert "duplicate" not in live, live
    assert live["mode"] == "live"
    assert {a["action"]: a["status"] for a in live["actions"]}["k8s:label-pod"] == "succeeded"
    assert "quarantine" in " ".join(labels())
    assert live["follows_dry_run"]["severity"] == "high"
    assert any(n.startswith("follows a dry run of this finding") for n in live["notes"])
    assert "follows a dry run of this finding" in json.dumps(webhook.received[-1])

    again = wiring.handle_event(copy.deepcopy(event), LocalContext())
    assert again["duplicate"] is True  # a live record is a repeat for a live run ...
    monkeypatch.setenv("DRY_RUN", "true")
    wiring.reset()
    assert wiring.handle_event(copy.deepcopy(event), LocalContext())["duplicate"] is True  # ... and for a dry one
    assert len(webhook.received) == 2  # the dry run, the live run


def test_steps_failed_on_a_passing_fault_are_not_done_and_the_redelivery_does_them(
    with_table: dict[str, Any],
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
    cluster: Cluster,
    local_stack: LocalStack,
    tmp_path: Path,
) -> None:
    """The API server is down: the invocation tells, records the incident as not complete and fails
    (Lambda delivers it again); the redelivery, the server back, does what was not done, and only that."""
    from lightkube.resources.core_v1 import Pod

    from chalicelib.errors import RetryLaterError
    from chalicelib.invocation import LocalContext
    from tests.integration.faults import FaultProxy

    serving = local_stack.ca_file.parent
    proxy = FaultProxy(local_stack.apiserver_url, cert=serving / "apiserver.crt", key=serving / "apiserver.key")
    config = json.loads(local_stack.responder_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = proxy.url
    kubeconfig = tmp_path / "through-proxy.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    _as_the_stage(with_table["project"], monkeypatch)
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    wiring.reset()
    pod, event = _reverse_shell_in(cluster)
    key = {"id": {"S": f"incident#{event['detail']['id']}"}}
    try:
        down = proxy.inject("status", times=-1, status=503)
        with pytest.raises(RetryLaterError, match="failed on a passing fault"):
            wiring.handle_event(copy.deepcopy(event), LocalContext())
        assert down.hits > 0
        assert len(webhook.received) == 1  # told, with what failed
        record = with_table["dynamodb"].get_item(TableName="eks-responder-incidents", Key=key)["Item"]
        assert record["complete"]["BOOL"] is False
        first = {a["action"]: a for a in json.loads(record["report"]["S"])["actions"]}
        assert first["k8s:label-pod"]["status"] == "failed"
        assert first["k8s:label-pod"]["transient"] is True

        proxy.faults.clear()  # the server is back: Lambda's retry, a minute later
        again = wiring.handle_event(copy.deepcopy(event), LocalContext())
        assert "duplicate" not in again, again
        statuses = {a["action"]: a["status"] for a in again["actions"]}
        assert statuses["k8s:label-pod"] == "succeeded"
        assert statuses["k8s:isolate-pod"] == "succeeded"
        labels = cluster.admin.get(Pod, pod, namespace=cluster.namespace).metadata.labels or {}
        assert any("quarantine" in k for k in labels)
        record = with_table["dynamodb"].get_item(TableName="eks-responder-incidents", Key=key)["Item"]
        assert record["complete"]["BOOL"] is True
        assert wiring.handle_event(copy.deepcopy(event), LocalContext())["duplicate"] is True  # done now
        assert len(webhook.received) == 2
    finally:
        proxy.close()


def test_a_throttled_call_before_any_step_records_nothing_as_handled_and_fails_for_a_retry(
    with_table: dict[str, Any], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from chalicelib.errors import RetryLaterError
    from chalicelib.invocation import LocalContext
    from chalicelib.response.execute import Responder

    _as_the_stage(with_table["project"], monkeypatch)
    event = load_event("execution-runtime-reverse-shell")
    original = Responder.handle

    def throttled(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetRole")  # fmt: skip

    monkeypatch.setattr(Responder, "handle", throttled)
    with pytest.raises(RetryLaterError, match="passing fault"):
        wiring.handle_event(copy.deepcopy(event), LocalContext())
    assert "a passing fault, tried again" in json.dumps(webhook.received)
    assert [r["status"]["S"] for r in _idempotency_records(with_table["dynamodb"])] == []  # nothing COMPLETED
    monkeypatch.setattr(Responder, "handle", original)
    again = wiring.handle_event(copy.deepcopy(event), LocalContext())  # Lambda's retry
    assert again["rule"] == "compromised-pod"
    assert "duplicate" not in again
