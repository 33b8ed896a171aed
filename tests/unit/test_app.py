"""The Lambda handler, through Chalice's test client (offline: no cluster is configured)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.entry import wiring
from chalicelib.sources import patterns
from tests.conftest import ROOT, event_files, load_event, load_json


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a metadata service for credentials
    wiring.reset()
    import app

    with Client(app.app, stage_name="dev") as test_client:
        yield test_client
    wiring.reset()


def _matches(pattern: dict[str, Any], event: Any) -> bool:
    # The subset of EventBridge pattern syntax the app uses: nested keys, lists of exact values.
    if not isinstance(event, dict):
        return False
    for key, wanted in pattern.items():
        if isinstance(wanted, dict):
            if not _matches(wanted, event.get(key)):
                return False
        elif event.get(key) not in wanted:
            return False
    return True


def test_kms_patterns_take_tampering_and_key_events_only() -> None:
    from chalicelib.sources.envelope import split_document
    from tests.conftest import SAMPLES

    def bare(name: str) -> dict[str, Any]:
        (wrapped,) = split_document(load_json(SAMPLES / "kms" / "bare" / f"CloudTrail_{name}.json"))
        return wrapped

    for name in ("ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy", "CreateGrant", "DisableKeyRotation"):
        assert _matches(patterns.KMS_API_CALL, bare(name)), name
    for name in ("Decrypt", "GetKeyPolicy", "EnableKey", "CreateKey"):
        assert not _matches(patterns.KMS_API_CALL, bare(name)), name
    assert _matches(patterns.KMS_KEY_EVENT, load_json(SAMPLES / "kms" / "KMS_CMK_Deletion.json"))
    assert not _matches(patterns.KMS_KEY_EVENT, load_json(SAMPLES / "kms" / "KMS_CMK_Rotation.json"))
    assert not _matches(patterns.GUARDDUTY_FINDING, bare("DisableKey"))


def test_every_project_event_matches_the_subscription() -> None:
    for path in event_files():
        assert _matches(patterns.GUARDDUTY_FINDING, load_json(path)), path.name


def test_other_sources_do_not_match() -> None:
    # the agent turning unhealthy is subscribed; healthy again, or malware-scan status, is not
    for detail_type in ("GuardDuty Runtime Protection Healthy", "GuardDuty Malware Protection Object Scan Result"):
        event = {**load_event("execution-runtime-reverse-shell"), "detail-type": detail_type}
        assert not _matches(patterns.GUARDDUTY_FINDING, event)
    unhealthy = load_event("execution-runtime-reverse-shell")
    unhealthy["detail-type"] = "GuardDuty Runtime Protection Unhealthy"
    assert _matches(patterns.GUARDDUTY_FINDING, unhealthy)


def test_handler_returns_a_report(client: Client) -> None:
    # dev stage: DRY_RUN=true; cluster "demo" has no kubeconfig and no EKS here, so it fails cleanly.
    response = client.lambda_.invoke(
        "on_guardduty_finding", load_event("execution-runtime-suspicious-shell-created-low")
    )
    assert response.payload["rule"] == "report-low-severity"
    assert response.payload["mode"] == "dry-run"


def test_sample_finding_is_planned_only(client: Client) -> None:
    response = client.lambda_.invoke(
        "on_guardduty_finding", load_event("sample-privilege-escalation-privileged-container")
    )
    assert {a["status"] for a in response.payload["actions"]} == {"planned"}


@pytest.mark.parametrize(
    "event",
    [
        {},
        "junk",
        [1, 2],
        {"id": "e-1", "source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {}},
        {"id": "e-2", "source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {"type": ["x"]}},
        {"id": "e-3", "source": "aws.ecr", "detail-type": "ECR Image Scan", "detail": {}},
    ],
)
def test_malformed_events_return_an_error_and_do_not_raise(
    client: Client, event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.lambda_.invoke("on_guardduty_finding", event)
    assert "error" in response.payload
    if isinstance(event, dict) and "id" in event:
        assert response.payload["event_id"] == event["id"]


def test_an_invalid_rules_file_fails_the_cold_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: contain-prod\n    match: {min_severity: urgent}\n    reason: x\n")
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "RULES_FILE": str(rules), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "rule 'contain-prod': match.min_severity" in proc.stderr


def test_a_huge_event_is_rejected_cleanly(client: Client) -> None:
    event = {**load_event("execution-runtime-reverse-shell")}
    event["detail"] = {**event["detail"], "title": "x" * 5_000_000, "severity": "high"}
    response = client.lambda_.invoke("on_guardduty_finding", event)
    assert "detail.severity" in response.payload["error"]
    assert len(response.payload["error"]) < 2000


def test_an_unexpected_error_is_logged_and_returned_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.entry import intake
    from chalicelib.response.report import Mode

    class Broken:
        def enrich(self, incident: Any, mode: Any) -> Any:
            return incident

        def accepted_risk(self, incident: Any) -> bool:
            return False

        def handle(self, incident: Any, mode: Any, done: Any = None, progress: Any = None) -> Any:
            raise RuntimeError("boom")

    result = intake.handle(load_event("execution-runtime-reverse-shell"), Broken(), Mode.PLAN)  # type: ignore[arg-type]
    assert result["error"].startswith("internal error while responding to")
    assert "boom" in result["error"]
    assert result["event_id"] == load_event("execution-runtime-reverse-shell")["id"]


def test_the_flow_log_handlers_reject_what_is_not_a_delivery(client: Client) -> None:
    payload = client.lambda_.invoke("on_flow_logs", {"hello": "world"}).payload
    assert payload["event_id"] == "cloudwatch-logs-payload"
    assert "no awslogs.data" in payload["error"]
    objects = client.lambda_.invoke("on_flow_log_object", {"id": "e-9", "source": "aws.s3", "detail": {}}).payload
    assert objects == {"event_id": "e-9", "error": "no S3 bucket and key in the event"}


def test_a_cloudwatch_logs_delivery_runs_through_the_handler(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import gzip
    import json

    # No credentials anywhere: the attribution's AWS lookup fails at once, offline, and says so.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    wiring.reset()
    record = "2 123456789012 eni-1 10.0.0.8 81.2.69.77 40000 3333 6 3 300 1 2 ACCEPT OK"
    body = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/vpc/flow", "logStream": "eni-1",
            "logEvents": [{"id": "1", "timestamp": 0, "message": record}]}  # fmt: skip
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()}}
    payload = client.lambda_.invoke("on_flow_logs", event).payload
    assert payload["records"] == 1
    (result,) = payload["results"]
    assert result["incident"]["type"] == "Impact:FlowLogs/MiningPoolConnection"
    assert result["mode"] == "dry-run"  # the dev stage
    assert result["incident"]["details"]["attribution"].startswith("not looked up: the responder's own account could")
    assert result["rule"] == "flow-not-attributed"
